//! The scheduler: which pending job goes to which controller and execution node.
//! `placement` is the pure decision; applying it to the store comes with the jobs API.

pub mod placement;
