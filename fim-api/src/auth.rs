//! Roles: an owner may change monitoring, a reader may only look (the product's two roles).
//!
//! The decision is made once, in a tower layer in front of every service (fim.v1.Fim, health,
//! reflection), from what the transport proved about the peer, never from request metadata:
//! on the Unix socket the kernel's peer credentials (root, or membership of the owner or
//! reader group); on the Windows named pipe the client's token (SYSTEM, BUILTIN\Administrators
//! or the owner group, or the reader group); on TCP the client certificate that TLS verified against the client CA,
//! looked up by its SHA-256 fingerprint. Doing it in one layer means a new RPC cannot forget
//! its check: anything not listed as mutating needs the reader role, the rest the owner role.
//! The caller's role and identity are left in the request's extensions ([`Caller`]) so the
//! service can say who changed what.
use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    transport::server::{TcpConnectInfo, TlsConnectInfo},
    Status,
};

use crate::{
    limits::PeerKey,
    peer::{UnixPeer, WindowsPeer},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// May enable, disable and edit monitoring, and trigger scans.
    Owner,
    /// May only view.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Reader => "reader",
        }
    }

    /// "owner" or "reader" (case-insensitive).
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Owner, Role::Reader]
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text))
    }

    fn allows(self, needed: Role) -> bool {
        self == Role::Owner || needed == Role::Reader
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The calls that change the daemon; every other call only reads.
const MUTATING: [&str; 4] = [
    "/fim.v1.Fim/TriggerScan",
    "/fim.v1.Fim/UpsertEntity",
    "/fim.v1.Fim/SetEntityEnabled",
    "/fim.v1.Fim/DeleteEntity",
];

/// The role a gRPC method (its HTTP/2 path) needs.
pub fn required_role(path: &str) -> Role {
    if MUTATING.contains(&path) {
        Role::Owner
    } else {
        Role::Reader
    }
}

/// Normalises a certificate fingerprint: SHA-256 as hex, colons allowed, any case.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// A `--api-client FINGERPRINT=ROLE` argument: a normalised fingerprint and its role.
pub fn parse_client(text: &str) -> Result<(String, Role), String> {
    let (fingerprint, role) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?} is not FINGERPRINT=owner|reader"))?;
    let role =
        Role::parse(role).ok_or_else(|| format!("{role:?} is not a role (owner or reader)"))?;
    let fingerprint = parse_fingerprint(fingerprint).ok_or_else(|| {
        format!("{fingerprint:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    })?;
    Ok((fingerprint, role))
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    fim_engine::change::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Who gets which role.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// Members of this group (primary or supplementary) are owners; root always is.
    pub owner_gid: Option<u32>,
    pub reader_gid: Option<u32>,
    /// Client certificate fingerprints (normalised by [`parse_fingerprint`]) and their roles.
    pub clients: HashMap<String, Role>,
}

/// The authenticated caller, in the request's extensions after the layer let it through.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    /// "uid 1000 (gid 1000, pid 42)" or "certificate SHA256:ab.. from 10.0.0.2:5123".
    pub identity: String,
    /// The kernel's credentials for a local caller; None for a TLS client.
    pub unix: Option<UnixPeer>,
    /// The token's identity for a named pipe caller; None elsewhere.
    pub windows: Option<WindowsPeer>,
    /// Who the caller's streams count against ([`crate::limits`]).
    pub peer: PeerKey,
}

impl Caller {
    /// Only root may see file content or monitor content (see crate::access). On Windows its
    /// counterpart is SYSTEM or an elevated administrator.
    pub fn is_root(&self) -> bool {
        self.unix.as_ref().is_some_and(|peer| peer.uid == 0)
            || self.windows.as_ref().is_some_and(WindowsPeer::is_admin)
    }
}

impl Roles {
    fn of_unix(&self, peer: &UnixPeer) -> Option<Role> {
        if peer.uid == 0 || self.owner_gid.is_some_and(|gid| peer.in_group(gid)) {
            Some(Role::Owner)
        } else if self.reader_gid.is_some_and(|gid| peer.in_group(gid)) {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// A named pipe client's role from its token's memberships, fixed at connect time.
    pub fn of_windows(peer: &WindowsPeer) -> Option<Role> {
        if peer.is_admin() || peer.owner_group {
            Some(Role::Owner)
        } else if peer.reader_group {
            Some(Role::Reader)
        } else {
            None
        }
    }

    /// The peer's identity and role (None: a peer with no role), from the transport.
    fn identify(&self, extensions: &http::Extensions) -> (String, Option<Role>, PeerKey) {
        if let Some(peer) = extensions.get::<Option<UnixPeer>>() {
            return match peer {
                Some(peer) => (peer.describe(), self.of_unix(peer), PeerKey::Uid(peer.uid)),
                None => (
                    "a local client with unknown credentials".into(),
                    None,
                    PeerKey::Unknown,
                ),
            };
        }
        if let Some(peer) = extensions.get::<Option<WindowsPeer>>() {
            return match peer {
                Some(peer) => (peer.describe(), Self::of_windows(peer), peer.key()),
                None => (
                    "a named pipe client whose token could not be read".into(),
                    None,
                    PeerKey::Unknown,
                ),
            };
        }
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            let remote = tls.get_ref().remote_addr();
            let from = remote
                .map(|addr| format!(" from {addr}"))
                .unwrap_or_default();
            let address = remote.map_or(PeerKey::Unknown, |addr| PeerKey::Address(addr.ip()));
            let leaf = tls.peer_certs().and_then(|certs| certs.first().cloned());
            return match leaf {
                Some(leaf) => {
                    let fingerprint = fingerprint(leaf.as_ref());
                    let role = self.clients.get(&fingerprint).copied();
                    let identity = format!("certificate SHA256:{fingerprint}{from}");
                    (identity, role, PeerKey::Certificate(fingerprint))
                }
                None => (
                    format!("a TLS client without a certificate{from}"),
                    None,
                    address,
                ),
            };
        }
        (
            "a client on an unknown transport".into(),
            None,
            PeerKey::Unknown,
        )
    }

    /// Allows the call or says why not.
    pub fn authorize(&self, path: &str, extensions: &http::Extensions) -> Result<Caller, Status> {
        let (identity, role, peer) = self.identify(extensions);
        let unix = extensions.get::<Option<UnixPeer>>().cloned().flatten();
        let windows = extensions.get::<Option<WindowsPeer>>().cloned().flatten();
        let needed = required_role(path);
        let call = path.rsplit('/').next().unwrap_or(path);
        match role {
            Some(role) if role.allows(needed) => Ok(Caller {
                role,
                identity,
                unix,
                windows,
                peer,
            }),
            Some(role) => {
                tracing::warn!(peer = %identity, call, role = %role, "denied: {call} needs the {needed} role");
                Err(Status::permission_denied(format!(
                    "{call} needs the {needed} role; {identity} is a {role}"
                )))
            }
            None => {
                tracing::warn!(peer = %identity, call, "denied: the peer has no role");
                Err(Status::permission_denied(format!(
                    "{call} needs the {needed} role; {identity} has no role on this daemon"
                )))
            }
        }
    }
}

/// The tower layer that applies [`Roles`] to every request.
#[derive(Clone)]
pub struct AuthLayer {
    roles: Arc<Roles>,
}

impl AuthLayer {
    pub fn new(roles: Arc<Roles>) -> Self {
        AuthLayer { roles }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            roles: self.roles.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    roles: Arc<Roles>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authorize<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self
            .roles
            .authorize(request.uri().path(), request.extensions())
        {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(uid: u32, gid: u32, groups: Vec<u32>) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(Some(UnixPeer {
            uid,
            gid,
            pid: Some(1),
            groups,
        }));
        extensions
    }

    #[test]
    fn unix_roles_follow_uid_and_groups() {
        let roles = Roles {
            owner_gid: Some(900),
            reader_gid: Some(901),
            clients: HashMap::new(),
        };
        let scan = "/fim.v1.Fim/TriggerScan";
        let status = "/fim.v1.Fim/GetStatus";
        assert!(roles.authorize(scan, &unix(0, 0, vec![])).is_ok());
        assert!(roles.authorize(scan, &unix(1000, 1000, vec![900])).is_ok());
        assert!(roles.authorize(status, &unix(1000, 901, vec![])).is_ok());
        let denied = roles.authorize(scan, &unix(1000, 901, vec![])).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied
            .message()
            .contains("TriggerScan needs the owner role"));
        let nobody = roles
            .authorize(status, &unix(65534, 65534, vec![]))
            .unwrap_err();
        assert_eq!(nobody.code(), tonic::Code::PermissionDenied);
        let unknown = roles
            .authorize(status, &http::Extensions::new())
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
    }

    fn pipe(administrator: bool, owner_group: bool, reader_group: bool) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(Some(WindowsPeer {
            sid: "S-1-5-21-1-2-3-1001".into(),
            account: Some(r"HOST\alice".into()),
            pid: Some(42),
            system: false,
            administrator,
            owner_group,
            reader_group,
        }));
        extensions
    }

    /// The named pipe's role decision on constructed token memberships: Wine runs every
    /// process as one administrator, so a non-member client cannot be made real there.
    #[test]
    fn pipe_roles_follow_token_memberships() {
        let roles = Roles::default();
        let scan = "/fim.v1.Fim/TriggerScan";
        let status = "/fim.v1.Fim/GetStatus";
        let admin = roles.authorize(scan, &pipe(true, false, false)).unwrap();
        assert_eq!(admin.role, Role::Owner);
        assert!(admin.is_root(), "an administrator sees content, like root");
        assert_eq!(
            admin.peer,
            PeerKey::Account {
                sid: "S-1-5-21-1-2-3-1001".into(),
                admin: true
            }
        );
        let owner = roles.authorize(scan, &pipe(false, true, true)).unwrap();
        assert_eq!(owner.role, Role::Owner);
        assert!(
            !owner.is_root(),
            "an owner-group member is not an administrator"
        );
        let reader = roles.authorize(status, &pipe(false, false, true)).unwrap();
        assert_eq!(reader.role, Role::Reader);
        let denied = roles
            .authorize(scan, &pipe(false, false, true))
            .unwrap_err();
        assert!(
            denied.message().contains("needs the owner role"),
            "{denied:?}"
        );
        assert!(denied.message().contains(r"HOST\alice"), "{denied:?}");
        let nobody = roles
            .authorize(status, &pipe(false, false, false))
            .unwrap_err();
        assert_eq!(nobody.code(), tonic::Code::PermissionDenied);
        assert!(nobody.message().contains("has no role"), "{nobody:?}");
        let mut system = http::Extensions::new();
        system.insert(Some(WindowsPeer {
            sid: "S-1-5-18".into(),
            account: None,
            pid: None,
            system: true,
            administrator: false,
            owner_group: false,
            reader_group: false,
        }));
        assert_eq!(roles.authorize(scan, &system).unwrap().role, Role::Owner);
        let mut unreadable = http::Extensions::new();
        unreadable.insert(None::<WindowsPeer>);
        assert!(roles.authorize(status, &unreadable).is_err());
    }

    #[test]
    fn fingerprints_normalise() {
        let colons = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&colons), Some("ab".repeat(32)));
        assert_eq!(parse_fingerprint("abc"), None);
        assert_eq!(fingerprint(b"").len(), 64);
        let client = format!("{colons}=Reader");
        assert_eq!(parse_client(&client), Ok(("ab".repeat(32), Role::Reader)));
        assert!(parse_client("abc=owner").is_err());
        assert!(parse_client(&format!("{colons}=admin")).is_err());
    }
}
