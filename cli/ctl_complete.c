/* `batonctl completion bash`: a completion function whose words come from
 * batonctl's own tables (commands, options, which options take a value),
 * plus the kinds of get/describe, the -o formats, and node names and
 * request ids asked of the router (`batonctl get nodes -o json` is not
 * parsed: the table's first column is enough). */
#include "ctl.h"

static int ctl_words(FILE *out, const char *const *w)
{
    size_t i;

    for (i = 0; w[i] != NULL; i++) {
        if (fprintf(out, "%s%s", i ? " " : "", w[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

int ctl_completion_bash(FILE *out, const ctl_words_t *words)
{
    if (fprintf(out, "# bash completion for batonctl: source <(batonctl completion bash)\n"
                     "_batonctl() {\n"
                     "    local cur prev cmd i w\n"
                     "    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
                     "    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
                     "    local cmds=\"") < 0 ||
        ctl_words(out, words->cmds) != 0 ||
        fprintf(out, "\"\n    local opts=\"-r -o -w -t -h ") < 0 ||
        ctl_words(out, words->opts) != 0 ||
        fprintf(out, "\"\n    local valopts=\" -r -o -t ") < 0 ||
        ctl_words(out, words->value_opts) != 0 ||
        fprintf(out,
                " \"\n"
                "    case \"$prev\" in\n"
                "        -o|--output) COMPREPLY=( $(compgen -W \"table wide json yaml\" -- \"$cur\") ); return ;;\n"
                "        --role) COMPREPLY=( $(compgen -W \"prefill decode kvstore\" -- \"$cur\") ); return ;;\n"
                "        --tls-ca|--tls-cert|--tls-key) COMPREPLY=( $(compgen -f -- \"$cur\") ); return ;;\n"
                "    esac\n"
                "    if [[ \"$valopts\" == *\" $prev \"* ]]; then return; fi\n"
                "    cmd=\"\"\n"
                "    local pos=()\n"
                "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
                "        w=\"${COMP_WORDS[i]}\"\n"
                "        if [[ \"$valopts\" == *\" $w \"* ]]; then ((i++)); continue; fi\n"
                "        [[ \"$w\" == -* ]] && continue\n"
                "        if [[ -z \"$cmd\" ]]; then cmd=\"$w\"; else pos+=(\"$w\"); fi\n"
                "    done\n"
                "    if [[ \"$cur\" == -* ]]; then\n"
                "        COMPREPLY=( $(compgen -W \"$opts\" -- \"$cur\") ); return\n"
                "    fi\n"
                "    if [[ -z \"$cmd\" ]]; then\n"
                "        COMPREPLY=( $(compgen -W \"$cmds\" -- \"$cur\") ); return\n"
                "    fi\n"
                "    case \"$cmd:${#pos[@]}\" in\n"
                "        get:0) COMPREPLY=( $(compgen -W \"nodes requests leases\" -- \"$cur\") ) ;;\n"
                "        describe:0) COMPREPLY=( $(compgen -W \"node request\" -- \"$cur\") ) ;;\n"
                "        completion:0) COMPREPLY=( $(compgen -W \"bash\" -- \"$cur\") ) ;;\n"
                "        drain:0|undrain:0|forget:0|flush-cache:0|leases:0|get:1|describe:1)\n"
                "            local kind=nodes\n"
                "            [[ \"${pos[0]}\" == req* ]] && kind=requests\n"
                "            [[ \"$cmd\" == get && \"${pos[0]}\" == lease* ]] && kind=nodes\n"
                "            local names\n"
                "            names=$(batonctl get \"$kind\" 2>/dev/null | awk 'NR > 1 { print $1 }')\n"
                "            COMPREPLY=( $(compgen -W \"$names\" -- \"$cur\") ) ;;\n"
                "        cancel:0|trace:0)\n"
                "            COMPREPLY=( $(compgen -W \"$(batonctl get requests 2>/dev/null | awk 'NR > 1 { print $1 }')\" -- \"$cur\") ) ;;\n"
                "    esac\n"
                "}\n"
                "complete -F _batonctl batonctl\n") < 0) {
        return -1;
    }
    return fflush(out) == 0 ? 0 : -1;
}
