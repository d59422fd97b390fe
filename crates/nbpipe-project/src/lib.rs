//! Projects: a folder of notebooks with an `nbpipe.yaml` that says which
//! notebooks run, in what order, with which parameters, and what starts them.
//!
//! * [`config`]: reading and validating `nbpipe.yaml` into a [`Project`] of
//!   [`Step`]s and [`Trigger`]s. Every problem in the file is a
//!   [`ConfigError`] naming the file, line, column and key.
//! * [`run`]: running a project's steps through the engine (in order or as a DAG, in
//!   parallel up to `jobs`), with retries, time limits, run context parameters, the
//!   content-addressed step cache and the run's outputs (`{id}.ipynb`, `{id}.html`, `run.json`).
//! * [`secrets`]: resolving `secrets:` to values for a run's kernels, and the masker that
//!   keeps them out of everything the run records.
//!
//! This crate must not parse CLI arguments or print; the CLI renders its
//! errors.
//!
//! # Example
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # for nb in ["extract.ipynb", "train.ipynb", "report.ipynb"] {
//! #     std::fs::write(dir.path().join(nb), "{}")?;
//! # }
//! let text = "
//! name: sales
//! parameters: {region: eu}
//! notebooks:
//!   - extract.ipynb
//!   - path: train.ipynb
//!     needs: extract
//!     timeout: 1h30m
//!     parameters: {epochs: 3}
//!   - path: report.ipynb
//!     needs: [extract]
//! trigger:
//!   schedule: 0 6 * * *
//! ";
//! let project = nbpipe_project::config::parse(dir.path(), "nbpipe.yaml", text)?;
//! assert_eq!(project.name, "sales");
//! // `train` and `report` both need only `extract`: they may run together.
//! assert_eq!(project.order(), vec![vec![0], vec![1, 2]]);
//! let train = &project.steps[1];
//! assert_eq!(train.timeout, Some(std::time::Duration::from_secs(5400)));
//! assert_eq!(project.step_parameters(1).len(), 2);
//!
//! // Errors name the file, line, column and key.
//! let err = nbpipe_project::config::parse(dir.path(), "nbpipe.yaml", "notebooks: [a.ipynb]\nnotebok: 1\n")
//!     .unwrap_err();
//! assert!(err.to_string().contains("nbpipe.yaml:2:1: unknown key `notebok` (did you mean `notebooks`?)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod run;
pub mod secrets;

pub use config::{
    load, parse, CapacityProvider, ConfigError, DockerConfig, EcsConfig, EnvConfig, ExecutorConfig,
    NotifyEvent, NotifyKind, NotifyTarget, Project, ServePolicy, Step, Trigger, Volume,
};
