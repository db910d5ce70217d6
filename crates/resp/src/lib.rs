//! The Redis protocol at Shoal's edge: requests in, replies out, and the table of
//! commands the server knows.
//!
//! Requests are framed by redis-protocol; this crate adds what a server needs around it:
//! limits on what a client may declare before it is believed ([`decode::Limits`]), inline
//! commands for people typing at a socket, reply encoding for RESP2 and RESP3 from one
//! [`Value`] tree (or any tree of the same shapes, [`encode::ReplyTree`]), written
//! directly and held to redis-protocol's encoder by a property test, and the command table
//! (arity, flags, ACL categories) that COMMAND reports and the server checks before
//! dispatching, and the users (ACLs) whose rules it checks them against.

pub mod acl;
pub mod commands;
pub mod decode;
pub mod encode;
pub mod glob;

pub use commands::{lookup, Command, COMMANDS};
pub use decode::{Decoder, Limits, RespError};
pub use encode::{encode, Protocol, Value};
