//! docker's command-line conventions that clap does not have, applied to
//! the arguments before clap parses them: the `container VERB` and
//! `image VERB` spellings ([`alias_args`]), and flags that end at the
//! first operand ([`stop_at_operand`]).
//!
//! docker's CLI (cobra and pflag with interspersed flags off) stops
//! reading its own flags at the first operand of `run`, `create` and
//! `exec`: in `docker run IMAGE -a -l x` the `-a -l x` belong to the
//! command. clap's `trailing_var_arg` only starts once the command's first
//! word is not a known flag, so `run IMAGE -a` was read as `run`'s
//! `--attach`. [`stop_at_operand`] puts a `--` after that operand, which
//! ends clap's flags at the same place docker's end.

use std::ffi::OsString;

/// The verbs whose first operand (the image, or the container for
/// `exec`) ends their flags.
const OPERAND_ENDS_FLAGS: &[&str] = &["run", "create", "exec"];

/// Global flags that take a value (and may come before the verb).
const GLOBAL_VALUE_FLAGS: &[&str] = &["--isolation", "--log-level"];

/// The index of the verb: the first word that is neither a global flag
/// nor its value.
fn verb_index(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if GLOBAL_VALUE_FLAGS.contains(&a.as_ref()) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

/// How a flag word of `verb` is read: how many words it spans (itself and
/// the value that follows it, when it takes one and has none attached).
fn flag_words(verb: &clap::Command, word: &str) -> usize {
    let takes_next = |arg: Option<&clap::Arg>| {
        arg.is_some_and(|arg| {
            // `--sig-proxy[=false]`: a value only after `=`.
            arg.get_action().takes_values() && !arg.is_require_equals_set()
        })
    };
    if let Some(long) = word.strip_prefix("--") {
        if long.contains('=') {
            return 1;
        }
        let arg = verb.get_arguments().find(|a| {
            a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|all| all.contains(&long))
        });
        return if takes_next(arg) { 2 } else { 1 };
    }
    // A cluster of short flags (`-it`, `-eK=V`, `-e` `K=V`): the first
    // one that takes a value takes the rest of the word, or else the
    // next word.
    let shorts: Vec<char> = word[1..].chars().collect();
    for (k, c) in shorts.iter().enumerate() {
        let arg = verb.get_arguments().find(|a| a.get_short() == Some(*c));
        let Some(arg) = arg else {
            return 1; // unknown: clap reports it
        };
        if takes_next(Some(arg)) {
            return if k + 1 == shorts.len() { 2 } else { 1 };
        }
    }
    1
}

/// Ends the flags of `run`, `create` and `exec` (and of `compose run` and
/// `compose exec`, at the service) at their first operand, as docker's
/// CLI does: a `--` is put after it (when words follow), so every word
/// after the image (or the container, or the service) reaches the command
/// unchanged. `cli` is the whole command definition, built.
pub fn stop_at_operand(cli: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let Some(v) = verb_index(&args) else {
        return args;
    };
    let verb_name = args[v].to_string_lossy().into_owned();
    if verb_name == "compose" {
        let Some(compose) = cli.find_subcommand("compose") else {
            return args;
        };
        // compose's own flags (`-f FILE`, `-p NAME`) come before its verb.
        let Some(sub) = first_operand(compose, &args, v + 1) else {
            return args;
        };
        let sub_name = args[sub].to_string_lossy().into_owned();
        return match compose.find_subcommand(&sub_name) {
            Some(c) if COMPOSE_OPERAND_ENDS_FLAGS.contains(&sub_name.as_str()) => {
                end_after_operand(c, args, sub + 1)
            }
            _ => args,
        };
    }
    if !OPERAND_ENDS_FLAGS.contains(&verb_name.as_str()) {
        return args;
    }
    let Some(verb) = cli.find_subcommand(&verb_name) else {
        return args;
    };
    end_after_operand(verb, args, v + 1)
}

/// The compose verbs whose first operand (the service) ends their flags.
const COMPOSE_OPERAND_ENDS_FLAGS: &[&str] = &["run", "exec"];

/// The index of the first word from `from` on that is not one of `verb`'s
/// flags or a flag's value; `None` at a `--` or when there is none.
fn first_operand(verb: &clap::Command, args: &[OsString], from: usize) -> Option<usize> {
    let mut i = from;
    while i < args.len() {
        let word = args[i].to_string_lossy();
        if word == "--" {
            return None;
        }
        if word.len() > 1 && word.starts_with('-') {
            i += flag_words(verb, &word);
            continue;
        }
        return Some(i);
    }
    None
}

/// Puts a `--` after `verb`'s first operand at or after `from`, unless the
/// user ended the flags already or nothing follows the operand.
fn end_after_operand(verb: &clap::Command, mut args: Vec<OsString>, from: usize) -> Vec<OsString> {
    if let Some(i) = first_operand(verb, &args, from) {
        if i + 1 < args.len() {
            args.insert(i + 1, "--".into());
        }
    }
    args
}

/// Container verbs docker also spells `container VERB`; `ls`, `ps`,
/// `list`, `prune` and `port` are `container` subcommands of their own.
const CONTAINER_VERBS: &[&str] = &[
    "attach", "commit", "cp", "create", "diff", "exec", "export", "inspect", "kill", "logs",
    "pause", "rename", "restart", "rm", "run", "start", "stats", "stop", "top", "unpause",
    "update", "wait",
];

/// Image verbs docker also spells `image VERB` that are not `image`
/// subcommands of their own (`image rm` is `rmi`).
const IMAGE_VERBS: &[&str] = &["build", "tag", "rm", "import"];

/// docker's `container VERB` and `image VERB` spellings of the top-level
/// verbs, rewritten to them: `container top c` is `top c`, `image rm x` is
/// `rmi x`. Global flags before the group word are kept.
pub fn alias_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(i) = verb_index(&args) else {
        return args;
    };
    let (Some(group), Some(verb)) = (args.get(i), args.get(i + 1)) else {
        return args;
    };
    let verb = verb.to_string_lossy().into_owned();
    if group == "container" && CONTAINER_VERBS.contains(&verb.as_str()) {
        args.remove(i);
    } else if group == "image" && IMAGE_VERBS.contains(&verb.as_str()) {
        args.remove(i);
        if verb == "rm" {
            args[i] = "rmi".into();
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::stop_at_operand;
    use clap::CommandFactory;

    fn words(s: &str) -> Vec<String> {
        let mut cli = crate::Cli::command();
        cli.build();
        stop_at_operand(&cli, s.split(' ').map(Into::into).collect())
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn flags_end_at_the_image_or_the_container() {
        assert_eq!(
            words("berth run --rm img echo -a -l"),
            ["berth", "run", "--rm", "img", "--", "echo", "-a", "-l"]
        );
        assert_eq!(
            words("berth run img -a"),
            ["berth", "run", "img", "--", "-a"]
        );
        // Values of flags before the image are not the image.
        assert_eq!(
            words("berth --isolation native run -e A=1 -it --name n -w/x img sh"),
            [
                "berth",
                "--isolation",
                "native",
                "run",
                "-e",
                "A=1",
                "-it",
                "--name",
                "n",
                "-w/x",
                "img",
                "--",
                "sh"
            ]
        );
        assert_eq!(
            words("berth create --label=a -l b --sig-proxy img -c x"),
            [
                "berth",
                "create",
                "--label=a",
                "-l",
                "b",
                "--sig-proxy",
                "img",
                "--",
                "-c",
                "x"
            ]
        );
        assert_eq!(
            words("berth exec -u 0 c ls -l"),
            ["berth", "exec", "-u", "0", "c", "--", "ls", "-l"]
        );
    }

    #[test]
    fn compose_run_and_exec_flags_end_at_the_service() {
        assert_eq!(
            words("berth compose -f c.yml -p p run --rm -e A=1 svc ls -l"),
            [
                "berth", "compose", "-f", "c.yml", "-p", "p", "run", "--rm", "-e", "A=1", "svc",
                "--", "ls", "-l"
            ]
        );
        assert_eq!(
            words("berth compose exec -T -u 0 svc sh -c x"),
            ["berth", "compose", "exec", "-T", "-u", "0", "svc", "--", "sh", "-c", "x"]
        );
        // Other compose verbs, and a lone service, are left alone.
        assert_eq!(
            words("berth compose logs -f svc"),
            ["berth", "compose", "logs", "-f", "svc"]
        );
        assert_eq!(
            words("berth compose run svc"),
            ["berth", "compose", "run", "svc"]
        );
    }

    #[test]
    fn other_verbs_and_lone_operands_are_left_alone() {
        assert_eq!(words("berth run img"), ["berth", "run", "img"]);
        assert_eq!(
            words("berth run -- img -a"),
            ["berth", "run", "--", "img", "-a"]
        );
        assert_eq!(words("berth logs -f c"), ["berth", "logs", "-f", "c"]);
        assert_eq!(words("berth run -d"), ["berth", "run", "-d"]);
        assert_eq!(words("berth"), ["berth"]);
    }
}

#[cfg(test)]
mod alias_tests {
    use super::alias_args;

    fn words(s: &str) -> Vec<String> {
        alias_args(s.split(' ').map(Into::into).collect())
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn group_spellings_become_the_top_level_verbs() {
        assert_eq!(words("berth container top c"), ["berth", "top", "c"]);
        assert_eq!(
            words("berth --isolation native container diff c"),
            ["berth", "--isolation", "native", "diff", "c"]
        );
        assert_eq!(words("berth image rm x"), ["berth", "rmi", "x"]);
        assert_eq!(words("berth image tag a b"), ["berth", "tag", "a", "b"]);
        // Subcommands of their own, and other words, are left alone.
        assert_eq!(
            words("berth container ls -a"),
            ["berth", "container", "ls", "-a"]
        );
        assert_eq!(
            words("berth image inspect x"),
            ["berth", "image", "inspect", "x"]
        );
        assert_eq!(
            words("berth run container top"),
            ["berth", "run", "container", "top"]
        );
        assert_eq!(words("berth container"), ["berth", "container"]);
    }
}
