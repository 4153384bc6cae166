//! `:` command mode: parsing what the operator typed and completing views and targets.
//!
//! Not for running commands: the app does that with the parsed [`Command`].

/// The views and verbs command mode knows, in the order Tab offers them.
pub const VERBS: &[(&str, &str)] = &[
    ("workloads", "the workloads table"),
    ("logs", "logs of the selected workload"),
    ("rules", "the autoscaler view: rules and their decisions"),
    ("host", "show one target: :host NAME, or :host to show all"),
    (
        "ctx",
        "show one Kubernetes context, opening it from the kubeconfig if it is not open: \
         :ctx NAME, or :ctx to show all",
    ),
    ("help", "the key help"),
    ("quit", "leave the console"),
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Workloads,
    Logs,
    /// The autoscaler view.
    Rules,
    /// Show only this target, or all when `None`.
    Host(Option<String>),
    /// Open this context of the kubeconfig, which is not open yet, and show it alone.
    OpenContext(String),
    Help,
    Quit,
}

/// The text being typed, with the state of Tab completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub input: String,
    /// What the operator had typed before pressing Tab, and which candidate is shown.
    completing: Option<(String, usize)>,
}

impl CommandLine {
    /// Replace the input with the next candidate that starts with what was typed.
    pub fn complete(&mut self, candidates: &[String]) {
        let (typed, next) = match &self.completing {
            Some((typed, i)) => (typed.clone(), i + 1),
            None => (self.input.clone(), 0),
        };
        let matching: Vec<&String> = candidates
            .iter()
            .filter(|c| c.starts_with(&typed))
            .collect();
        if matching.is_empty() {
            return;
        }
        let i = next % matching.len();
        self.input = matching[i].clone();
        self.completing = Some((typed, i));
    }

    /// Forget the completion cycle after any other key.
    pub fn reset_completion(&mut self) {
        self.completing = None;
    }

    /// The candidates matching the typed text, for the hint line.
    pub fn hints<'a>(&self, candidates: &'a [String]) -> Vec<&'a String> {
        let typed = self.completing.as_ref().map_or(&self.input, |(t, _)| t);
        candidates
            .iter()
            .filter(|c| c.starts_with(typed.as_str()))
            .take(8)
            .collect()
    }
}

/// Everything Tab can produce: each verb, then `host NAME` for each open target, then
/// `ctx NAME` for each context (open or only in the kubeconfig), each once.
pub fn candidates(targets: &[String], contexts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = VERBS.iter().map(|(v, _)| v.to_string()).collect();
    out.extend(targets.iter().map(|t| format!("host {t}")));
    for context in contexts {
        let candidate = format!("ctx {context}");
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// Parse a command line against the open `targets`; the error says what was wrong and what is
/// accepted. A context that is not open is for the app to look for in the kubeconfig.
pub fn parse(input: &str, targets: &[String]) -> Result<Command, String> {
    let mut words = input.split_whitespace();
    let Some(verb) = words.next() else {
        return Err("empty command; try :workloads, :logs, :host NAME, :help or :quit".into());
    };
    // A target's name is the rest of the line: a kubeconfig context may have spaces in it.
    if matches!(verb, "host" | "ctx" | "target") {
        let rest = input.trim_start()[verb.len()..].trim();
        return match rest {
            "" => Ok(Command::Host(None)),
            name if targets.iter().any(|t| t == name) => Ok(Command::Host(Some(name.to_string()))),
            name if verb == "ctx" => Ok(Command::OpenContext(name.to_string())),
            name => Err(format!(
                "no target named {name:?}; known targets: {}",
                targets.join(", ")
            )),
        };
    }
    let arg = words.next();
    if let Some(extra) = words.next() {
        return Err(format!(
            "unexpected {extra:?} after :{verb} {}",
            arg.unwrap_or("")
        ));
    }
    let command = match (verb, arg) {
        ("workloads" | "wl" | "w", None) => Command::Workloads,
        ("logs" | "log", None) => Command::Logs,
        ("rules" | "rule" | "autoscaler", None) => Command::Rules,
        ("help" | "h", None) => Command::Help,
        ("quit" | "q" | "q!", None) => Command::Quit,
        (verb, Some(arg)) if VERBS.iter().any(|(v, _)| *v == verb) => {
            return Err(format!(":{verb} takes no argument (got {arg:?})"));
        }
        (verb, _) => {
            let known: Vec<&str> = VERBS.iter().map(|(v, _)| *v).collect();
            return Err(format!(
                "unknown command :{verb}; known: {}",
                known.join(", ")
            ));
        }
    };
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<String> {
        vec!["local".to_string(), "lab".to_string()]
    }

    #[test]
    fn tab_cycles_through_candidates_that_start_with_what_was_typed() {
        let all = candidates(&targets(), &[]);
        let mut line = CommandLine {
            input: "host l".to_string(),
            completing: None,
        };
        line.complete(&all);
        assert_eq!(line.input, "host local");
        line.complete(&all);
        assert_eq!(line.input, "host lab");
        line.complete(&all);
        assert_eq!(line.input, "host local");
    }

    #[test]
    fn a_verb_completes_from_its_first_letters() {
        let mut line = CommandLine {
            input: "wo".to_string(),
            completing: None,
        };
        line.complete(&candidates(&targets(), &[]));
        assert_eq!(line.input, "workloads");
    }

    #[test]
    fn host_names_a_known_target_or_shows_all() {
        assert_eq!(
            parse("host lab", &targets()),
            Ok(Command::Host(Some("lab".to_string())))
        );
        assert_eq!(parse("host", &targets()), Ok(Command::Host(None)));
        assert_eq!(
            parse("ctx  prod eu ", &["prod eu".to_string()]),
            Ok(Command::Host(Some("prod eu".into())))
        );
        let err = parse("host prod", &targets()).unwrap_err();
        assert!(
            err.contains("\"prod\"") && err.contains("local, lab"),
            "{err}"
        );
        let err = parse("target prod", &targets()).unwrap_err();
        assert!(
            err.contains("\"prod\"") && err.contains("local, lab"),
            "{err}"
        );
    }

    #[test]
    fn ctx_shows_an_open_context_and_asks_to_open_one_that_is_not_taking_the_rest_of_the_line() {
        let open = vec!["local".to_string(), "prod".to_string()];
        assert_eq!(
            parse("ctx prod", &open),
            Ok(Command::Host(Some("prod".into())))
        );
        assert_eq!(parse(" ctx ", &open), Ok(Command::Host(None)));
        assert_eq!(
            parse("ctx  staging eu ", &open),
            Ok(Command::OpenContext("staging eu".into()))
        );
        assert_eq!(
            parse("ctxprod", &open),
            Err(
                "unknown command :ctxprod; known: workloads, logs, rules, host, ctx, help, quit"
                    .into()
            )
        );
    }

    #[test]
    fn tab_offers_every_context_once_those_of_the_kubeconfig_after_the_open_targets() {
        let open = vec!["local".to_string(), "prod".to_string()];
        let contexts = vec![
            "prod".to_string(),
            "staging eu".to_string(),
            "prod".to_string(),
        ];
        let all = candidates(&open, &contexts);
        let ctx: Vec<&str> = all
            .iter()
            .filter(|c| c.starts_with("ctx "))
            .map(String::as_str)
            .collect();
        assert_eq!(ctx, ["ctx prod", "ctx staging eu"]);

        let mut line = CommandLine {
            input: "ctx s".to_string(),
            completing: None,
        };
        line.complete(&all);
        assert_eq!(line.input, "ctx staging eu");
        line.complete(&all);
        assert_eq!(line.input, "ctx staging eu", "the only match stays");
        let mut line = CommandLine {
            input: "ctx ".to_string(),
            completing: None,
        };
        line.complete(&all);
        assert_eq!(line.input, "ctx prod");
        line.complete(&all);
        assert_eq!(line.input, "ctx staging eu");
    }

    #[test]
    fn an_unknown_command_lists_the_known_ones() {
        let err = parse("deploy", &targets()).unwrap_err();
        assert!(
            err.starts_with("unknown command :deploy; known: workloads"),
            "{err}"
        );
    }
}
