// SPDX-License-Identifier: Apache-2.0
#include "cli/cli_app.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/format.h"

namespace physpool::cli {
namespace {

// `text` wrapped at 78 columns, each line indented by two spaces.
std::string Wrap(const std::string& text) {
  std::string out;
  for (absl::string_view para : absl::StrSplit(text, '\n')) {
    std::string line = " ";
    for (absl::string_view word :
         absl::StrSplit(para, ' ', absl::SkipEmpty())) {
      if (line.size() + 1 + word.size() > 78 && line.size() > 1) {
        out += line + "\n";
        line = " ";
      }
      line += " ";
      line.append(word.data(), word.size());
    }
    out += line + "\n";
  }
  return out;
}

// Lists a subcommand by the first line of its description (a leaf's
// description is its whole help text).
// The root lists its commands in its footer, noun and verb together.
class Formatter final : public CLI::Formatter {
 public:
  std::string make_subcommands(const CLI::App* app,
                               CLI::AppFormatMode mode) const override {
    if (app->get_parent() == nullptr) return "";
    return CLI::Formatter::make_subcommands(app, mode);
  }
  std::string make_subcommand(const CLI::App* sub) const override {
    const std::string& d = sub->get_description();
    return absl::StrFormat("  %-26s %s\n", sub->get_name(),
                           d.substr(0, d.find('\n')));
  }
};

// "unknown command" for a word that is no subcommand where one is due:
// CLI11 itself would only say that a subcommand is required.
std::optional<std::string> UnknownCommand(
    CLI::App* root, const std::vector<std::string>& args) {
  CLI::App* at = root;
  std::string words;
  for (size_t i = 0; i < args.size() && !at->get_subcommands({}).empty(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return std::nullopt;
    if (a.size() > 1 && a[0] == '-') {  // a flag, and its value if separate
      const CLI::Option* o =
          root->get_option_no_throw(a.substr(0, a.find('=')));
      if (o != nullptr && a.find('=') == std::string::npos &&
          o->get_items_expected_min() > 0) {
        ++i;
      }
      continue;
    }
    words += words.empty() ? a : " " + a;
    CLI::App* sub = nullptr;
    for (CLI::App* s : at->get_subcommands({}))
      if (s->check_name(a)) sub = s;
    if (sub == nullptr) return "unknown command \"" + words + "\"";
    at = sub;
  }
  return std::nullopt;
}

}  // namespace

void SetUpRoot(CLI::App* root) {
  root->formatter(std::make_shared<Formatter>());
  root->fallthrough();
  root->require_subcommand(1);
  root->set_help_flag("-h,--help", "print this help and exit");
}

CLI::App* AddLeaf(CLI::App* parent, const std::string& name,
                  const std::string& synopsis, const std::string& details,
                  const std::string& footer) {
  CLI::App* leaf = parent->add_subcommand(name, synopsis);
  leaf->description(synopsis + "\n" + Wrap(details));
  leaf->footer(footer);
  return leaf;
}

CLI::Validator SizeCheck() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        auto b = ParseBytes(v);
        return b.ok() ? "" : std::string(b.status().message());
      },
      "SIZE", "size");
}

CLI::Validator DurationCheck() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        auto ms = ParseMillis(v);
        if (!ms.ok()) return std::string(ms.status().message());
        if (*ms <= 0) return "a duration above 0, such as 5s";
        return "";
      },
      "DURATION", "duration");
}

std::optional<int> Parse(CLI::App* root, std::vector<std::string> args) {
  if (args.empty()) {
    std::fputs(root->help().c_str(), stderr);
    return 2;
  }
  if (args[0] == "help") {  // "help pool status" = "pool status --help"
    args.erase(args.begin());
    args.push_back("--help");
  }
  if (auto unknown = UnknownCommand(root, args)) {
    std::fprintf(stderr, "Error: %s\nRun 'physpoolctl --help' for usage.\n",
                 unknown->c_str());
    return 2;
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    root->parse(args);
  } catch (const CLI::CallForHelp&) {
    std::fputs(root->help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::vector<std::string> words;
    for (CLI::App* a : Chosen(root)) words.push_back(a->get_name());
    std::fprintf(stderr, "Error: %s\nRun 'physpoolctl %s%s--help' for usage.\n",
                 e.what(), absl::StrJoin(words, " ").c_str(),
                 words.empty() ? "" : " ");
    return 2;
  }
  return std::nullopt;
}

std::vector<CLI::App*> Chosen(CLI::App* root) {
  std::vector<CLI::App*> chain;
  for (CLI::App* a = root;;) {
    std::vector<CLI::App*> subs = a->get_subcommands();
    if (subs.empty()) return chain;
    a = subs.front();
    chain.push_back(a);
  }
}

}  // namespace physpool::cli
