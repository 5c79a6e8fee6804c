# SPDX-License-Identifier: Apache-2.0
# bash completion for physpoolctl (bash-completion 2.x; installed as
# share/bash-completion/completions/physpoolctl and loaded on demand).
# Commands, verbs and flags follow cli/ctl.cc Commands() and
# cli/physpoolctl.cc; tests/cli/completion_test.py fails when a command that
# `physpoolctl --help` lists, or a flag of its `--help`, is not offered.

_physpoolctl() {
    local cur prev words cword split
    _init_completion -s || return

    local globals="--endpoint --token --token-file --tls-ca --tls-cert
        --tls-key --timeout -o --output --help --version"
    local nouns="pool segment lease tenant alloc release watch health
        simulate help"
    # Flags that take no value (the rest take one).
    local bools=" --all --ascii --preemptible --reclaim --numa-strict --hold
        --summary --help -h --version "

    local -A verbs=(
        [pool]="status map"
        [segment]="list drain undrain add remove"
        [lease]="list get renew revoke"
        [tenant]="list set-limits"
    )
    local -A flags=(
        ["pool status"]=""
        ["pool map"]="--segment --width --ascii --page-size"
        ["segment list"]="--page-size"
        ["segment add"]="--bytes --freelist --numa"
        ["lease list"]="--all --tenant --page-size"
        ["lease renew"]="--ttl"
        ["lease revoke"]="--reason"
        ["tenant list"]="--page-size"
        ["tenant set-limits"]="--max-bytes --max-leases"
        ["alloc"]="--bytes --alignment --boundary --max-segments --low --high
            --numa --numa-strict --preemptible --reclaim --wait --ttl --label
            --device --hold"
        ["simulate"]="--summary"
    )
    # Commands that take positional arguments (IDs, names, a file).
    local -A nargs=(
        ["segment drain"]=1 ["segment undrain"]=1 ["segment remove"]=1
        ["lease get"]=1 ["lease renew"]=1 ["lease revoke"]=1
        ["tenant set-limits"]=1 ["release"]=1 ["simulate"]=1
    )

    # The words before the cursor that are not flags or flag values.
    local -a pos=()
    local i w skip=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if ((skip)); then
            skip=0
            continue
        fi
        case $w in
            --*=*) ;;
            -*) [[ $bools == *" $w "* ]] || skip=1 ;;
            *) pos+=("$w") ;;
        esac
    done

    # A flag's value.
    case $prev in
        -o | --output)
            COMPREPLY=($(compgen -W "table json yaml" -- "$cur"))
            return
            ;;
        --token-file | --tls-ca | --tls-cert | --tls-key)
            _filedir
            return
            ;;
        --endpoint)
            COMPREPLY=($(compgen -W "unix:/run/physpool/physpool.sock
                127.0.0.1:7600" -- "$cur"))
            [[ ${#COMPREPLY[@]} -eq 1 && $cur == unix:* ]] && compopt -o nospace
            return
            ;;
        -*)
            # A size, a duration, an ID: nothing to offer.
            [[ $bools == *" $prev "* ]] || return
            ;;
    esac
    $split && return

    # "help pool status" completes like "pool status".
    if [[ ${pos[0]-} == help ]]; then
        pos=("${pos[@]:1}")
        if ((${#pos[@]} == 0)); then
            COMPREPLY=($(compgen -W "${nouns/help/}" -- "$cur"))
        elif ((${#pos[@]} == 1)) && [[ -n ${verbs[${pos[0]}]-} ]]; then
            COMPREPLY=($(compgen -W "${verbs[${pos[0]}]}" -- "$cur"))
        fi
        return
    fi

    local cmd="" rest=0
    if ((${#pos[@]} == 0)); then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$globals" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$nouns" -- "$cur"))
        fi
        return
    elif [[ -n ${verbs[${pos[0]}]-} ]]; then
        if ((${#pos[@]} == 1)); then
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$globals" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "${verbs[${pos[0]}]}" -- "$cur"))
            fi
            return
        fi
        cmd="${pos[0]} ${pos[1]}"
        rest=$((${#pos[@]} - 2))
    else
        cmd=${pos[0]}
        rest=$((${#pos[@]} - 1))
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${flags[$cmd]-} $globals" -- "$cur"))
    elif [[ $cmd == simulate ]] && ((rest == 0)); then
        _filedir
        COMPREPLY+=($(compgen -W "-" -- "$cur"))
    elif ((rest >= ${nargs[$cmd]-0})); then
        # Nothing positional left: the command's flags.
        COMPREPLY=($(compgen -W "${flags[$cmd]-} $globals" -- "$cur"))
    fi
} &&
    complete -F _physpoolctl physpoolctl

# ex: filetype=sh
