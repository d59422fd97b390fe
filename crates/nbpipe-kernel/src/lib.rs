//! Jupyter kernels for nbpipe: find them, start them, talk to them, stop them.
//!
//! - [`spec`] discovers kernelspecs the way Jupyter does.
//! - [`Kernel`] is one running kernel process with its shell, IOPub, stdin and control
//!   channels. Messages arrive as lossless JSON ([`Msg`]) on one event stream; every wait is
//!   raced against the process exiting, and dropping a `Kernel` kills its process group.
//!
//! - [`fork::ForkServers`] forks Python kernels of managed environments from a zygote that
//!   has already imported ipykernel: a kernel in milliseconds instead of a cold start.
//! - [`pool::KernelPool`] keeps pre-started kernels so a triggered run skips the cold start.
//!
//! This crate knows nothing about notebooks: turning messages into outputs is `nbpipe-exec`'s job.
#![deny(missing_docs)]

mod client;
pub mod fork;
pub mod pool;
pub mod spec;
mod wire;

pub use client::{Event, ExitInfo, Kernel, KernelError, LaunchOptions};
pub use fork::ForkServers;
pub use wire::Msg;
