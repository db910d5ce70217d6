//! Shoal's fault-injection suite: real `shoal node` processes on loopback, a recorded
//! workload through several routers, faults on a seeded schedule, and, once the faults
//! healed, the checks that nothing acknowledged was lost (`check`), that every group's
//! replicas converged, and how long writes were unavailable after each fault.

pub mod check;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod proxy;
pub mod run;
pub mod workload;
