#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""physpoolctl's shell completion (cli/completion/) against the CLI itself.

What the CLI offers is read from its own help: `physpoolctl --help` lists the
commands ("noun verb" lines, or nouns whose `NOUN --help` lists the verbs)
and each `physpoolctl COMMAND --help` names the command's flags. Then:

- bash: the script is sourced after bash-completion's framework
  (/usr/share/bash-completion/bash_completion) and _physpoolctl is called
  with COMP_WORDS/COMP_CWORD as bash would; COMPREPLY is the answer.
- zsh: an interactive `zsh -i` on a pseudo-terminal, with compinit and the
  directory of _physpoolctl on fpath (so the #compdef line is what binds
  it), is sent "physpoolctl ...<TAB>"; a compadd wrapper records each
  candidate the completion adds to a file, TAB is bound to a widget that
  runs complete-word and then writes a marker.

Each checks: every command is offered after `physpoolctl`, exactly the
verbs of each noun after it, every flag a command's --help names after
`COMMAND --`, table/json/yaml after -o, files after --token-file, and the
flags the CLI11 port adds (alloc --hold, -o yaml). Both checks are then run
on copies of the scripts with one command taken out and must fail: a
missing command is caught.

Usage: completion_test.py PHYSPOOLCTL SOURCE_DIR
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
FORMATS = {"table", "json", "yaml"}
# Flags the CLI11 port of physpoolctl adds (docs/cli.md): offered already.
EXTRA_FLAGS = {"alloc": {"--hold"}}
FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-o)(?![\w-])")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def run_help(ctl, *args):
    p = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout


def command_section(text):
    """The indented lines under a "Commands..."/"Subcommands..." header."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^(Sub)?[Cc]ommands\b.*:\s*$", line):
            inside = True
            continue
        if inside:
            if not line.strip():
                continue
            if not line[:1].isspace():
                break
            lines.append(line.split())
    return lines


def cli_commands(ctl):
    """{noun: [verbs]} and {command: {flags}} from the CLI's help."""
    rc, text = run_help(ctl, "--help")
    if rc != 0:
        fail(f"physpoolctl --help exited {rc}")
    verbs = {}
    for words in command_section(text):
        noun = words[0]
        verbs.setdefault(noun, [])
        if len(words) == 2 and re.fullmatch(r"[a-z][a-z-]*", words[1]):
            verbs[noun].append(words[1])
    if len(verbs) < 5 or "pool" not in verbs:
        fail("could not read the commands from `physpoolctl --help` (the "
             f"parser needs updating?):\n{text}")
    for noun, vs in verbs.items():
        if not vs:  # a noun whose own --help lists its verbs (CLI11 style)
            rc, sub = run_help(ctl, noun, "--help")
            if rc == 0:
                vs.extend(w[0] for w in command_section(sub))
    flags = {}
    for noun, vs in verbs.items():
        for cmd in ([f"{noun} {v}" for v in vs] or [noun]):
            rc, sub = run_help(ctl, *cmd.split(), "--help")
            if rc != 0:
                fail(f"physpoolctl {cmd} --help exited {rc}")
            flags[cmd] = set(FLAG_RE.findall(sub)) | EXTRA_FLAGS.get(cmd, set())
    if not any(flags.values()):
        fail("no flag found in any command's --help")
    return verbs, flags


def cases(verbs, flags, tmp):
    """(words before the cursor, the word being completed, check, what)."""
    out = [([], "", ("superset", set(verbs) | {"help"}), "the commands"),
           ([], "", ("subset", set(verbs) | {"help"}), "only commands"),
           (["-o"], "", ("equal", FORMATS), "the output formats"),
           (["--output"], "", ("equal", FORMATS), "the output formats"),
           (["--token-file"], os.path.join(tmp, "tok"),
            ("files", {"token.txt"}), "files")]
    for noun, vs in verbs.items():
        if vs:
            out.append(([noun], "", ("equal", set(vs)), f"the verbs of {noun}"))
    for cmd, fs in flags.items():
        out.append((cmd.split(), "--", ("superset", {f for f in fs if f.startswith("--")}),
                    f"the flags of {cmd}"))
    out.append((["pool", "status", "-o"], "", ("equal", FORMATS), "formats after a command"))
    return out


def judge(shell, got, before, cur, check, what):
    kind, want = check
    line = " ".join(["physpoolctl", *before, cur])
    if kind == "files":  # bash gives the path, zsh the name (and a prefix)
        got = {os.path.basename(g) for g in got}
        kind = "superset"
    bad = ((kind == "superset" and not want <= got)
           or (kind == "subset" and not got <= want)
           or (kind == "equal" and got != want))
    if bad:
        return (f"{shell}: `{line}<TAB>` should offer {what} ({kind} of "
                f"{sorted(want)}); got {sorted(got)}; missing "
                f"{sorted(want - got)}, extra {sorted(got - want)}")
    return None


# --- bash -----------------------------------------------------------------

BASH_DRIVER = r'''
source "$BASH_COMPLETION" || exit 3
source "$SCRIPT" || exit 3
while IFS= read -r line; do
  eval "COMP_WORDS=($line)"
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMP_LINE="${COMP_WORDS[*]}"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _physpoolctl physpoolctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}"
  printf '%s\n' '--done--'
done
'''


def bash_check(script, all_cases):
    if not shutil.which("bash") or not os.path.exists(BASH_COMPLETION):
        fail(f"bash and bash-completion ({BASH_COMPLETION}) are needed: "
             "apt-get install bash-completion (make deps)")
    p = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    if p.returncode != 0:
        return [f"bash -n {script}: {p.stderr}"]
    lines = []
    for before, cur, _, _ in all_cases:
        words = ["physpoolctl", *before, cur]
        lines.append(" ".join("'" + w.replace("'", "'\\''") + "'" for w in words))
    env = dict(os.environ, BASH_COMPLETION=BASH_COMPLETION, SCRIPT=script)
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER],
                       input="\n".join(lines) + "\n", capture_output=True,
                       text=True, env=env, timeout=120)
    if p.returncode != 0:
        return [f"bash driver exited {p.returncode}: {p.stderr}"]
    answers = p.stdout.split("--done--\n")[:-1]
    if len(answers) != len(all_cases):
        return [f"bash: {len(answers)} answers to {len(all_cases)} cases: "
                f"{p.stdout}{p.stderr}"]
    errors = []
    for (before, cur, check, what), ans in zip(all_cases, answers):
        got = {w for w in ans.splitlines() if w}
        e = judge("bash", got, before, cur, check, what)
        if e:
            errors.append(e)
    return errors


# --- zsh ------------------------------------------------------------------

ZSHRC = r'''
PS1='zsh%% '
unsetopt autolist automenu listbeep beep
fpath=(%(fpath)s $fpath)
autoload -Uz compinit
compinit -u -D
compadd() {
  # -O, -A and -D only collect: pass them through (zsh-capture-completion).
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "$@"
    return $?
  fi
  local -a __hits
  builtin compadd -A __hits "$@"
  (( $#__hits )) && print -rl -- "${__hits[@]}" >> %(capture)s
  builtin compadd "$@"
}
_capture_tab() {
  : >| %(capture)s
  zle complete-word
  print -r -- '--done--' >> %(capture)s
}
zle -N _capture_tab
bindkey '^I' _capture_tab
print -r -- ready >| %(ready)s
'''


class Zsh:
    def __init__(self, fpath_dir, tmp):
        self.capture = os.path.join(tmp, "capture")
        ready = os.path.join(tmp, "ready")
        zdot = tempfile.mkdtemp(dir=tmp)
        with open(os.path.join(zdot, ".zshrc"), "w") as f:
            f.write(ZSHRC % {"fpath": fpath_dir, "capture": self.capture,
                             "ready": ready})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": zdot,
               "ZDOTDIR": zdot, "TERM": "xterm", "LANG": "C.UTF-8"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe("zsh", ["zsh", "--no-globalrcs", "-i"], env)
        self.out = b""
        self.wait_for(lambda: os.path.exists(ready), "zsh to start")

    def pump(self):
        r, _, _ = select.select([self.fd], [], [], 0.05)
        if r:
            try:
                self.out += os.read(self.fd, 65536)
            except OSError:
                pass

    def wait_for(self, cond, what, limit=30.0):
        # A guard against a hang, not a measurement.
        end = time.monotonic() + limit
        while not cond():
            if time.monotonic() > end:
                tail = self.out[-2000:].decode("utf-8", "replace")
                raise RuntimeError(f"zsh: timed out waiting for {what}; "
                                   f"terminal:\n{tail}")
            self.pump()

    def complete(self, line):
        if os.path.exists(self.capture):
            os.unlink(self.capture)

        def done():
            try:
                with open(self.capture) as f:
                    return f.read().endswith("--done--\n")
            except FileNotFoundError:
                return False
        os.write(self.fd, line.encode() + b"\t")
        self.wait_for(done, f"the completion of {line!r}")
        with open(self.capture) as f:
            words = f.read().splitlines()[:-1]
        os.write(self.fd, b"\x15")  # kill-whole-line: the next one starts clean
        return {w for w in words if w}

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def zsh_check(script, all_cases, tmp):
    if not shutil.which("zsh"):
        fail("zsh is needed: apt-get install zsh (make deps)")
    p = subprocess.run(["zsh", "-n", script], capture_output=True, text=True)
    if p.returncode != 0:
        return [f"zsh -n {script}: {p.stderr}"]
    with open(script) as f:
        if f.readline().strip() != "#compdef physpoolctl":
            return [f"{script}: the first line must be '#compdef physpoolctl'"]
    z = Zsh(os.path.dirname(script), tmp)
    errors = []
    try:
        for before, cur, check, what in all_cases:
            line = " ".join(["physpoolctl", *before, cur])
            got = z.complete(line)
            e = judge("zsh", got, before, cur, check, what)
            if e:
                errors.append(e)
    finally:
        z.close()
    return errors


def without_command(src, dst, noun):
    """A copy of a completion script in which `noun` is no command."""
    with open(src) as f:
        text = f.read()
    if src.endswith(".bash"):
        new = re.sub(r"(local nouns=\"[^\"]*?)\b%s\b" % noun, r"\1", text)
    else:
        new = re.sub(r"\n\s*'%s:[^\n]*" % noun, "", text)
    if new == text:
        fail(f"could not take {noun} out of {src} for the self-check")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as f:
        f.write(new)
    return dst


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    ctl, src = sys.argv[1], sys.argv[2]
    bash_script = os.path.join(src, "cli/completion/physpoolctl.bash")
    zsh_script = os.path.join(src, "cli/completion/_physpoolctl")
    verbs, flags = cli_commands(ctl)
    print("commands from --help:", ", ".join(
        f"{n} [{' '.join(v)}]" if v else n for n, v in verbs.items()))
    with tempfile.TemporaryDirectory() as tmp:
        open(os.path.join(tmp, "token.txt"), "w").close()
        all_cases = cases(verbs, flags, tmp)
        errors = bash_check(bash_script, all_cases)
        print(f"bash: {len(all_cases)} cases, {len(errors)} failed")
        zerrors = zsh_check(zsh_script, all_cases, tmp)
        print(f"zsh: {len(all_cases)} cases, {len(zerrors)} failed")
        errors += zerrors

        # The checks catch a missing command.
        victim = "health" if "health" in verbs else sorted(verbs)[-1]
        broken_bash = without_command(bash_script, os.path.join(tmp, "b", "physpoolctl.bash"), victim)
        broken_zsh = without_command(zsh_script, os.path.join(tmp, "z", "_physpoolctl"), victim)
        for shell, errs in (("bash", bash_check(broken_bash, all_cases)),
                            ("zsh", zsh_check(broken_zsh, all_cases, tmp))):
            if not any(re.search(r"missing \[[^\]]*'%s'" % victim, e) for e in errs):
                errors.append(f"{shell}: a script without the command {victim} "
                              f"passed the check: {errs}")
    if errors:
        fail("\n".join(errors))
    print("OK")


if __name__ == "__main__":
    main()
