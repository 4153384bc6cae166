//! Which Kubernetes clusters to talk to, read as kubectl reads them: `--kubeconfig PATH`, else
//! every file of `KUBECONFIG` merged (the first file to name a cluster, user or context wins),
//! else `~/.kube/config`; the chosen `--context` or the current one; `--namespace`, else the
//! context's namespace, else every namespace. With no kubeconfig at all and
//! `KUBERNETES_SERVICE_HOST` set, the pod's service account (in-cluster configuration).
//!
//! Not for connecting: a [`Target`] holds the configuration a worker connects with.

use std::ffi::OsString;
use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use thiserror::Error;
use tracing::warn;

/// The name of the target made from a pod's service account.
pub const IN_CLUSTER: &str = "in-cluster";

/// What the command line chose; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--kubeconfig`: this file only, instead of `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: instead of the kubeconfig's current context.
    pub context: Option<String>,
    /// `--namespace`: instead of the context's namespace.
    pub namespace: Option<String>,
}

/// One cluster to connect to, as a context of the kubeconfig names it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The context's name, or [`IN_CLUSTER`].
    pub name: String,
    pub config: kube::Config,
    /// The namespace to show; `None` shows every namespace.
    pub namespace: Option<String>,
    /// Where pod CPU and memory are read: this Prometheus server and its queries, or
    /// metrics-server when `None`. Set from config.toml, not from the kubeconfig.
    pub prometheus: Option<super::prom::PodQueries>,
}

impl Target {
    /// Whether the files the context's user names for its credentials can be read; the error
    /// names the kubeconfig field and the file. Checked before a client is made, since the
    /// client would report a missing file without saying which.
    pub fn readable_credentials(&self) -> Result<(), String> {
        let user = &self.config.auth_info;
        let files = [
            (
                "client-certificate",
                &user.client_certificate,
                user.client_certificate_data.is_some(),
            ),
            (
                "client-key",
                &user.client_key,
                user.client_key_data.is_some(),
            ),
            ("tokenFile", &user.token_file, user.token.is_some()),
        ];
        for (field, path, inline) in files {
            let Some(path) = path.as_ref().filter(|_| !inline) else {
                continue;
            };
            if let Err(e) = std::fs::File::open(path) {
                return Err(format!("its user's {field} {path} cannot be read: {e}"));
            }
        }
        Ok(())
    }
}

/// Why no target could be made; every message names the file and the context.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("kubeconfig {path} does not exist (given with --kubeconfig)")]
    ExplicitMissing { path: String },
    #[error(
        "no kubeconfig found (looked at {looked}) and not inside a cluster \
         (KUBERNETES_SERVICE_HOST is not set); set KUBECONFIG or pass --kubeconfig"
    )]
    NotFound { looked: String },
    #[error("cannot read kubeconfig {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot merge kubeconfig {path} with the files before it: {source}")]
    Merge {
        path: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("{files} has no contexts")]
    NoContexts { files: String },
    #[error("{files} sets no current-context; choose one with --context (contexts: {known})")]
    NoCurrentContext { files: String, known: String },
    #[error("context \"{context}\" is not in {files} (contexts there: {known})")]
    MissingContext {
        files: String,
        context: String,
        known: String,
    },
    #[error("context \"{context}\" in {files}: {source}")]
    Context {
        files: String,
        context: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("in-cluster configuration (KUBERNETES_SERVICE_HOST is set) failed: {source}")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error(
        "context \"{context}\" is not available inside a cluster: the only one is \"{IN_CLUSTER}\""
    )]
    NotInCluster { context: String },
}

/// Every context name, in the kubeconfig's order (for `:ctx`).
pub fn contexts(sel: &Selection) -> Result<Vec<String>, ConfigError> {
    contexts_in(sel, &Env::from_process())
}

/// The chosen context, or the current one.
pub fn resolve(sel: &Selection) -> Result<Target, ConfigError> {
    resolve_in(sel, &Env::from_process())
}

/// Every context as a target of its own (a chosen `--context` narrows it to that one). A context
/// that cannot be made into a target is left out with a warning in the log; an error only when
/// none can.
pub fn resolve_all(sel: &Selection) -> Result<Vec<Target>, ConfigError> {
    resolve_all_in(sel, &Env::from_process())
}

/// What the process environment says about where configuration lives; tests make their own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// `KUBECONFIG`, as set.
    pub kubeconfig: Option<OsString>,
    /// `~/.kube/config`.
    pub default_file: Option<PathBuf>,
    /// `KUBERNETES_SERVICE_HOST` is set.
    pub in_cluster: bool,
}

impl Env {
    fn from_process() -> Env {
        Env {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            default_file: std::env::home_dir().map(|h| h.join(".kube").join("config")),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Where the configuration comes from.
enum Source {
    /// Kubeconfig files, merged in this order.
    Files(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
}

/// The merged kubeconfig and the files it came from, for messages.
struct Loaded {
    config: Kubeconfig,
    files: String,
}

pub(crate) fn contexts_in(sel: &Selection, env: &Env) -> Result<Vec<String>, ConfigError> {
    match source(sel, env)? {
        Source::InCluster => Ok(vec![IN_CLUSTER.to_string()]),
        Source::Files(paths) => {
            let loaded = load(&paths)?;
            Ok(context_names(&loaded.config))
        }
    }
}

pub(crate) fn resolve_in(sel: &Selection, env: &Env) -> Result<Target, ConfigError> {
    let paths = match source(sel, env)? {
        Source::InCluster => return in_cluster(sel),
        Source::Files(paths) => paths,
    };
    let loaded = load(&paths)?;
    let name = match (&sel.context, &loaded.config.current_context) {
        (Some(chosen), _) => chosen.clone(),
        (None, Some(current)) if !current.is_empty() => current.clone(),
        (None, _) => {
            return Err(ConfigError::NoCurrentContext {
                files: loaded.files.clone(),
                known: known_list(&loaded.config),
            });
        }
    };
    target_of(&loaded, &name, sel)
}

pub(crate) fn resolve_all_in(sel: &Selection, env: &Env) -> Result<Vec<Target>, ConfigError> {
    let paths = match source(sel, env)? {
        Source::InCluster => return Ok(vec![in_cluster(sel)?]),
        Source::Files(paths) => paths,
    };
    let loaded = load(&paths)?;
    if let Some(chosen) = &sel.context {
        return Ok(vec![target_of(&loaded, chosen, sel)?]);
    }
    let names = context_names(&loaded.config);
    let mut targets = Vec::new();
    let mut first_error = None;
    for name in names {
        match target_of(&loaded, &name, sel) {
            Ok(target) => targets.push(target),
            Err(error) => {
                warn!(context = %name, %error, "kubernetes context left out");
                first_error.get_or_insert(error);
            }
        }
    }
    match (targets.is_empty(), first_error) {
        (true, Some(error)) => Err(error),
        (true, None) => Err(ConfigError::NoContexts {
            files: loaded.files,
        }),
        (false, _) => Ok(targets),
    }
}

/// The files to read, or in-cluster configuration when there are none and the process runs in
/// a pod. Files named by `KUBECONFIG` that do not exist are passed over, as kubectl does.
fn source(sel: &Selection, env: &Env) -> Result<Source, ConfigError> {
    if let Some(path) = &sel.kubeconfig {
        if !path.exists() {
            return Err(ConfigError::ExplicitMissing {
                path: path.display().to_string(),
            });
        }
        return Ok(Source::Files(vec![path.clone()]));
    }
    let listed: Vec<PathBuf> = match &env.kubeconfig {
        Some(value) => std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => Vec::new(),
    };
    let candidates = if listed.is_empty() {
        env.default_file.iter().cloned().collect()
    } else {
        listed
    };
    let existing: Vec<PathBuf> = candidates.iter().filter(|p| p.exists()).cloned().collect();
    if !existing.is_empty() {
        return Ok(Source::Files(existing));
    }
    if env.in_cluster {
        return Ok(Source::InCluster);
    }
    Err(ConfigError::NotFound {
        looked: join_paths(&candidates),
    })
}

/// Reads and merges the files; the first file to set a name or the current context wins.
fn load(paths: &[PathBuf]) -> Result<Loaded, ConfigError> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        let read = Kubeconfig::read_from(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        merged = Some(match merged {
            None => read,
            Some(before) => before.merge(read).map_err(|source| ConfigError::Merge {
                path: path.display().to_string(),
                source,
            })?,
        });
    }
    Ok(Loaded {
        config: merged.unwrap_or_default(),
        files: join_paths(paths),
    })
}

/// The target of context `name`, with its cluster, user and namespace.
fn target_of(loaded: &Loaded, name: &str, sel: &Selection) -> Result<Target, ConfigError> {
    let Some(named) = loaded.config.contexts.iter().find(|c| c.name == name) else {
        if loaded.config.contexts.is_empty() {
            return Err(ConfigError::NoContexts {
                files: loaded.files.clone(),
            });
        }
        return Err(ConfigError::MissingContext {
            files: loaded.files.clone(),
            context: name.to_string(),
            known: known_list(&loaded.config),
        });
    };
    let context_namespace = named
        .context
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .filter(|ns| !ns.is_empty());
    let options = KubeConfigOptions {
        context: Some(name.to_string()),
        ..KubeConfigOptions::default()
    };
    // Building the configuration reads nothing more and never waits: the future is ready at
    // its first poll, so blocking on it does not stall a runtime.
    let built = futures::executor::block_on(kube::Config::from_custom_kubeconfig(
        loaded.config.clone(),
        &options,
    ));
    let config = built.map_err(|source| ConfigError::Context {
        files: loaded.files.clone(),
        context: name.to_string(),
        source,
    })?;
    Ok(Target {
        name: name.to_string(),
        config,
        namespace: sel.namespace.clone().or(context_namespace),
        prometheus: None,
    })
}

/// The pod's service account; the namespace is the pod's own unless one was chosen.
fn in_cluster(sel: &Selection) -> Result<Target, ConfigError> {
    if let Some(context) = sel.context.as_ref().filter(|c| c.as_str() != IN_CLUSTER) {
        return Err(ConfigError::NotInCluster {
            context: context.clone(),
        });
    }
    let config = kube::Config::incluster().map_err(|source| ConfigError::InCluster { source })?;
    let namespace = sel
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok(Target {
        name: IN_CLUSTER.to_string(),
        config,
        namespace: Some(namespace),
        prometheus: None,
    })
}

fn context_names(config: &Kubeconfig) -> Vec<String> {
    config.contexts.iter().map(|c| c.name.clone()).collect()
}

fn known_list(config: &Kubeconfig) -> String {
    let names = context_names(config);
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no file".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: dev-cluster
    cluster: { server: "http://127.0.0.1:6443" }
  - name: shared
    cluster: { server: "http://127.0.0.1:1111" }
users:
  - name: dev-user
    user: { token: dev-token }
contexts:
  - name: dev
    context: { cluster: dev-cluster, user: dev-user, namespace: shop }
  - name: my prod context
    context: { cluster: shared, user: dev-user }
"#;

    const SECOND: &str = r#"
apiVersion: v1
kind: Config
current-context: staging
clusters:
  - name: shared
    cluster: { server: "http://127.0.0.1:2222" }
  - name: staging-cluster
    cluster: { server: "http://127.0.0.1:7443" }
users:
  - name: staging-user
    user: { token: staging-token }
contexts:
  - name: staging
    context: { cluster: staging-cluster, user: staging-user, namespace: web }
  - name: dev
    context: { cluster: staging-cluster, user: staging-user }
"#;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        fn env_of(&self, paths: &[&PathBuf]) -> Env {
            let joined = std::env::join_paths(paths.iter().map(|p| p.as_path())).unwrap();
            Env {
                kubeconfig: Some(joined),
                default_file: Some(self.dir.path().join("no-such-default")),
                in_cluster: false,
            }
        }
    }

    fn server(target: &Target) -> String {
        target.config.cluster_url.to_string()
    }

    #[test]
    fn kubeconfig_with_two_files_merges_them_and_the_first_file_wins_each_name() {
        let files = Files::new();
        let first = files.write("first", FIRST);
        let second = files.write("second", SECOND);
        let env = files.env_of(&[&first, &second]);
        let sel = Selection::default();

        let names = contexts_in(&sel, &env).unwrap();
        assert_eq!(names, vec!["dev", "my prod context", "staging"]);

        let current = resolve_in(&sel, &env).unwrap();
        assert_eq!(current.name, "dev", "the first file's current-context wins");
        assert_eq!(server(&current), "http://127.0.0.1:6443/");
        assert_eq!(current.namespace.as_deref(), Some("shop"));

        let staging = Selection {
            context: Some("staging".into()),
            ..Selection::default()
        };
        let staging = resolve_in(&staging, &env).unwrap();
        assert_eq!(server(&staging), "http://127.0.0.1:7443/");
        assert_eq!(staging.namespace.as_deref(), Some("web"));
    }

    #[test]
    fn a_cluster_named_in_both_files_is_the_first_files() {
        let files = Files::new();
        let first = files.write("first", FIRST);
        let second = files.write("second", SECOND);
        let env = files.env_of(&[&first, &second]);
        let sel = Selection {
            context: Some("my prod context".into()),
            ..Selection::default()
        };
        let target = resolve_in(&sel, &env).unwrap();
        assert_eq!(server(&target), "http://127.0.0.1:1111/");
    }

    #[test]
    fn a_context_whose_name_has_spaces_is_chosen_and_without_a_namespace_shows_all() {
        let files = Files::new();
        let first = files.write("first", FIRST);
        let sel = Selection {
            kubeconfig: Some(first),
            context: Some("my prod context".into()),
            namespace: None,
        };
        let target = resolve_in(&sel, &Env::default()).unwrap();
        assert_eq!(target.name, "my prod context");
        assert_eq!(target.namespace, None);
    }

    #[test]
    fn a_missing_context_is_an_error_naming_the_files_and_the_contexts_there() {
        let files = Files::new();
        let first = files.write("first", FIRST);
        let sel = Selection {
            kubeconfig: Some(first.clone()),
            context: Some("prod".into()),
            namespace: None,
        };
        let error = resolve_in(&sel, &Env::default()).unwrap_err().to_string();
        assert!(error.contains("\"prod\""), "{error}");
        assert!(error.contains(&first.display().to_string()), "{error}");
        assert!(error.contains("\"dev\", \"my prod context\""), "{error}");
    }

    #[test]
    fn the_namespace_override_wins_over_the_contexts_namespace() {
        let files = Files::new();
        let first = files.write("first", FIRST);
        let sel = Selection {
            kubeconfig: Some(first),
            context: None,
            namespace: Some("payments".into()),
        };
        let target = resolve_in(&sel, &Env::default()).unwrap();
        assert_eq!(target.name, "dev");
        assert_eq!(target.namespace.as_deref(), Some("payments"));
        let all = resolve_all_in(&sel, &Env::default()).unwrap();
        assert!(
            all.iter()
                .all(|t| t.namespace.as_deref() == Some("payments"))
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn kubeconfig_files_that_do_not_exist_are_passed_over() {
        let files = Files::new();
        let missing = files.dir.path().join("missing");
        let second = files.write("second", SECOND);
        let env = files.env_of(&[&missing, &second]);
        let target = resolve_in(&Selection::default(), &env).unwrap();
        assert_eq!(target.name, "staging");
    }

    #[test]
    fn no_kubeconfig_and_no_cluster_is_an_error_saying_where_it_looked() {
        let files = Files::new();
        let missing = files.dir.path().join("missing");
        let env = files.env_of(&[&missing]);
        let error = resolve_in(&Selection::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        assert!(error.contains("KUBERNETES_SERVICE_HOST"), "{error}");
    }

    #[test]
    fn an_explicit_kubeconfig_that_does_not_exist_is_an_error() {
        let sel = Selection {
            kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
            ..Selection::default()
        };
        let error = contexts_in(&sel, &Env::default()).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/kubeconfig"), "{error}");
    }

    #[test]
    fn a_context_whose_cluster_is_missing_names_the_context() {
        let files = Files::new();
        let broken = files.write(
            "broken",
            "contexts:\n  - name: lost\n    context: { cluster: nowhere }\ncurrent-context: lost\n",
        );
        let sel = Selection {
            kubeconfig: Some(broken),
            ..Selection::default()
        };
        let error = resolve_in(&sel, &Env::default()).unwrap_err().to_string();
        assert!(error.contains("context \"lost\""), "{error}");
        assert!(error.contains("nowhere"), "{error}");
        assert!(resolve_all_in(&sel, &Env::default()).is_err());
    }

    #[test]
    fn a_file_that_is_not_yaml_is_an_error_naming_it() {
        let files = Files::new();
        let bad = files.write("bad", "contexts: [ {");
        let sel = Selection {
            kubeconfig: Some(bad.clone()),
            ..Selection::default()
        };
        let error = contexts_in(&sel, &Env::default()).unwrap_err().to_string();
        assert!(error.contains(&bad.display().to_string()), "{error}");
    }
}
