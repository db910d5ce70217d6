//! Who a gRPC call runs as, and whether it may: the same users and rules as RESP.
//!
//! A call carries its credentials in the standard `authorization` metadata as HTTP
//! Basic (`Basic base64(user:password)`); a call without them is the `default` user,
//! exactly as a RESP connection that never sent AUTH. Each command a call turns into is
//! checked by [`access::check`], so a user refused `FT.SEARCH` on RESP is refused the
//! Search rpc too, with the same words. As on RESP, a refusal re-reads the cluster's
//! users once before it is final (another router may have just granted it), within a
//! budget every gRPC call of the process shares (calls have no connection to keep one
//! each).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use shoal_resp::lookup;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::access::{self, Budget, Denial, Session};
use crate::node::Node;

/// A call's claimed identity, read from its metadata before the request is consumed.
#[derive(Debug, Default)]
pub struct Caller {
    credentials: Option<(String, Vec<u8>)>,
    /// Logged in on this node (a call's commands may be spread over a process's nodes;
    /// each node has its own copy of the users).
    session: Option<(Arc<Node>, Session)>,
}

impl Caller {
    /// Reads `authorization: Basic …`; any other scheme or a malformed value is refused
    /// rather than treated as no credentials (which could mean more rights, not fewer).
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(Caller::default());
        };
        let malformed =
            || Status::unauthenticated("authorization must be `Basic base64(user:password)`");
        let value = value.to_str().map_err(|_| malformed())?;
        let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(malformed());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| malformed())?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(malformed)?;
        let user = String::from_utf8(decoded[..colon].to_vec()).map_err(|_| malformed())?;
        Ok(Caller {
            credentials: Some((user, decoded[colon + 1..].to_vec())),
            session: None,
        })
    }

    /// Logs in on `node` (once per call) and checks that it may run every command.
    pub async fn authorize(
        &mut self,
        node: &Arc<Node>,
        budget: &parking_lot::Mutex<Budget>,
        commands: &[Vec<Bytes>],
    ) -> Result<(), Status> {
        if !matches!(&self.session, Some((on, _)) if Arc::ptr_eq(on, node)) {
            let mut session = Session::new();
            if let Some((user, password)) = &self.credentials {
                let mut verdict = access::credentials(&node.access, user.as_bytes(), password);
                if let Err(denial) = &verdict {
                    // A user made through another router a moment ago.
                    if denial.may_change_with_the_map()
                        && budget.lock().allows(&node.access)
                        && node.refresh_access().await
                    {
                        verdict = access::credentials(&node.access, user.as_bytes(), password);
                    }
                }
                match verdict {
                    Ok(name) => session.login(&name),
                    Err(denial) => return Err(refuse(node, denial)),
                }
            }
            self.session = Some((node.clone(), session));
        }
        let Some((_, session)) = self.session.as_mut() else {
            return Err(Status::internal("no session"));
        };
        for request in commands {
            // Every command the API builds is known; anything else is refused, not let by.
            let Some(command) = request.first().and_then(|name| lookup(name)) else {
                return Err(Status::internal("the API built an unknown command"));
            };
            let mut verdict = access::check(node, session, command, request);
            if let Err(denial) = &verdict {
                if denial.may_change_with_the_map()
                    && budget.lock().allows(&node.access)
                    && node.refresh_access().await
                {
                    session.decide_again();
                    verdict = access::check(node, session, command, request);
                }
            }
            if let Err(denial) = verdict {
                return Err(refuse(node, denial));
            }
        }
        Ok(())
    }
}

/// Counts a refusal and turns it into the status a gRPC client expects, with RESP's
/// words.
fn refuse(node: &Node, denial: Denial) -> Status {
    denial.count(&node.access);
    let message = denial.message();
    match denial {
        Denial::NoAuth | Denial::HelloNoAuth | Denial::WrongPass | Denial::NoPasswordConfigured => {
            Status::unauthenticated(message)
        }
        Denial::UsersUnknown => Status::unavailable(message),
        Denial::Command { .. } | Denial::Key | Denial::Index => Status::permission_denied(message),
        Denial::UnknownIndex(_) => Status::not_found(message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn basic_credentials_are_read_and_anything_else_refused() {
        let c = Caller::from_metadata(&MetadataMap::new()).unwrap();
        assert!(c.credentials.is_none());
        // "alice:s3:cr3t" — the password may hold colons.
        let c = Caller::from_metadata(&with("Basic YWxpY2U6czM6Y3IzdA==")).unwrap();
        assert_eq!(
            c.credentials,
            Some(("alice".to_owned(), b"s3:cr3t".to_vec()))
        );
        for bad in ["Bearer abc", "Basic", "Basic !!!", "Basic YWxpY2U="] {
            let e = Caller::from_metadata(&with(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
    }
}
