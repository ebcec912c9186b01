//! `gateway.toml`: where the gateway listens, whom it accepts, and where it spools.
//!
//! ```toml
//! [listen]
//! address = "0.0.0.0:11112"
//! ae_title = "VEIL"
//!
//! [[allow]]                 # one entry per sender; anyone else is rejected at association
//! ae_title = "CT_SCANNER_1"
//! address = "10.1.2.3"      # optional: only from this address
//!
//! [spool]
//! dir = "/var/lib/veil/spool"   # created 0700; received instances, encrypted
//! key = "/etc/veil/site.key"    # optional: else the key in VEIL_KEY
//!
//! [route]                       # optional: without it the gateway only receives
//! policy = "research.toml"      # optional: else the built-in default policy
//! destination = "dicom://PACS@10.1.2.4:104"
//! connections = 4               # optional: associations open to the destination at once
//! series_quiet_seconds = 30     # optional: a series is complete after this long without news
//! # or DICOMweb: destination = "https://pacs.example.org/dicom-web/studies" (STOW-RS; plain
//! # http only to this machine), token_env = "STOW_TOKEN" (a bearer token from the environment)
//! recipient = "lab"             # optional, with purpose: a consent-gated release, each
//! purpose = "internal-research" #   instance sent recorded in the disclosure ledger
//! store = "/var/lib/veil/veil.db" # optional: the registry (else VEIL_DB, else the default)
//! ```
//!
//! Errors name the file, line and column, like `veil policy check`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The gateway's settings, checked.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// This node's AE title; associations calling another title are rejected.
    pub ae_title: String,
    pub allow: Vec<AllowedPeer>,
    pub spool_dir: PathBuf,
    /// DICOM TLS on the listener (None: associations in clear).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Key file (None: the key comes from the environment).
    pub key: Option<PathBuf>,
    /// Where de-identified instances go (none: receive and spool only).
    pub routes: Vec<Route>,
}

/// De-identify with a policy, then store at a destination.
#[derive(Debug, Clone)]
pub struct Route {
    /// Names the route in status and in the spool (`route1`, `route2`… when not given).
    pub name: String,
    /// Policy file (None: the built-in default).
    pub policy: Option<PathBuf>,
    /// Where it stores; each gets every instance the route releases.
    pub destinations: Vec<Target>,
    /// Associations (or HTTP requests) open to the destination at once (1–16).
    pub connections: usize,
    /// A series waiting for a series stage (defacing) is complete when none of its instances
    /// arrived for this long.
    pub series_quiet: std::time::Duration,
    /// A release to a registered recipient for a purpose: only patients whose consent allows
    /// it are sent, each sent instance recorded in the disclosure ledger.
    pub release: Option<RouteRelease>,
}

/// One destination of one route: what the spool keeps apart and a drain delivers on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// Its directory under the spool's `lanes/` (empty: the spool's root, for a gateway with
    /// one route to one destination).
    pub name: String,
    /// Index into [`GatewayConfig::routes`].
    pub route: usize,
    /// Index into that route's destinations.
    pub destination: usize,
}

/// The consent-gated release a route makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRelease {
    /// The recipient, as registered (`veil recipient add`).
    pub recipient: String,
    pub purpose: String,
    /// The consent registry and ledger: a SQLite path or a `postgres://` URL (None: `VEIL_DB`,
    /// else the default store).
    pub store: Option<String>,
}

/// Where a route stores: a DIMSE node, or a DICOMweb STOW-RS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dimse(crate::scu::Destination),
    Stow(crate::stow::StowDestination),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Dimse(d) => d.fmt(f),
            Target::Stow(s) => f.write_str(&s.url),
        }
    }
}

/// A sender the gateway accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPeer {
    pub ae_title: String,
    /// None: from any address.
    pub address: Option<IpAddr>,
}

impl GatewayConfig {
    /// The lanes: one per route and destination, each de-identifying and delivering on its own
    /// (a destination that is down holds back no other). One route to one destination is one
    /// lane at the spool's root.
    pub fn lanes(&self) -> Vec<Lane> {
        let single = self.routes.len() == 1 && self.routes[0].destinations.len() == 1;
        let mut lanes = Vec::new();
        for (r, route) in self.routes.iter().enumerate() {
            for d in 0..route.destinations.len() {
                lanes.push(Lane {
                    name: match single {
                        true => String::new(),
                        false => format!("{}-{}", route.name, d + 1),
                    },
                    route: r,
                    destination: d,
                });
            }
        }
        lanes
    }

    /// The names of the spool's lanes (none for a single lane at its root).
    pub fn lane_names(&self) -> Vec<String> {
        self.lanes()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Whether a sender calling with `ae_title` from `address` is on the list.
    pub fn allows(&self, ae_title: &str, address: IpAddr) -> bool {
        self.allow
            .iter()
            .any(|p| p.ae_title == ae_title && p.address.is_none_or(|a| a == address))
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            error: e,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        GatewayConfig::parse(&text, &path.display().to_string(), base)
    }

    /// Parses `text` (from `origin`, named in errors); relative paths are taken from `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<GatewayConfig, ConfigError> {
        let at = |span: std::ops::Range<usize>, field: &str, message: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError::Invalid {
                origin: origin.to_string(),
                line,
                column,
                field: field.to_string(),
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at(span, "gateway", e.message().trim().to_string())
        })?;
        let listen = raw
            .listen
            .address
            .get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                at(
                    raw.listen.address.span(),
                    "listen.address",
                    "not an address and port such as 0.0.0.0:11112".into(),
                )
            })?;
        let ae_title = checked_ae_title(&raw.listen.ae_title)
            .map_err(|m| at(raw.listen.ae_title.span(), "listen.ae_title", m))?;
        let mut allow = Vec::new();
        for peer in &raw.allow {
            let title = checked_ae_title(&peer.ae_title)
                .map_err(|m| at(peer.ae_title.span(), "allow.ae_title", m))?;
            let address = match &peer.address {
                None => None,
                Some(a) => Some(
                    a.get_ref()
                        .parse::<IpAddr>()
                        .map_err(|_| at(a.span(), "allow.address", "not an IP address".into()))?,
                ),
            };
            allow.push(AllowedPeer {
                ae_title: title,
                address,
            });
        }
        if allow.is_empty() {
            return Err(at(
                0..0,
                "allow",
                "no [[allow]] entry: the gateway would refuse every sender; list the AE titles that may send".into(),
            ));
        }
        let raw_routes = match raw.route {
            None => Vec::new(),
            Some(OneOrMany::One(r)) => vec![r],
            Some(OneOrMany::Many(rs)) => rs,
        };
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw_routes.iter().enumerate() {
            let route = parse_route(r, i, base, &at)?;
            if let Some(dup) = routes.iter().find(|other| other.name == route.name) {
                let span = r.name.as_ref().map(|n| n.span()).unwrap_or(0..0);
                return Err(at(
                    span,
                    "route.name",
                    format!("two routes are named {:?}", dup.name),
                ));
            }
            routes.push(route);
        }
        let tls = listener_tls(&raw.listen, base, &at)?;
        Ok(GatewayConfig {
            listen,
            ae_title,
            allow,
            tls,
            spool_dir: base.join(raw.spool.dir.get_ref()),
            key: raw.spool.key.map(|k| base.join(k.get_ref())),
            routes,
        })
    }
}

type At<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError + 'a;

/// One `[route]` (or `[[route]]` entry), the `index`th.
fn parse_route(r: &RawRoute, index: usize, base: &Path, at: &At<'_>) -> Result<Route, ConfigError> {
    let name = match &r.name {
        None => format!("route{}", index + 1),
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().len() <= 32
                && n.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(at(
                    n.span(),
                    "route.name",
                    "1 to 32 letters, digits, - or _ (it names the route's part of the spool)"
                        .into(),
                ));
            }
            n.get_ref().clone()
        }
    };
    Ok(Route {
        name,
        series_quiet: match &r.series_quiet_seconds {
            None => std::time::Duration::from_secs(30),
            Some(q) if (1..=3600).contains(q.get_ref()) => {
                std::time::Duration::from_secs(*q.get_ref() as u64)
            }
            Some(q) => {
                return Err(at(
                    q.span(),
                    "route.series_quiet_seconds",
                    "between 1 and 3600".into(),
                ))
            }
        },
        connections: match &r.connections {
            None => 4,
            Some(c) if (1..=16).contains(c.get_ref()) => *c.get_ref() as usize,
            Some(c) => return Err(at(c.span(), "route.connections", "between 1 and 16".into())),
        },
        release: match (&r.recipient, &r.purpose) {
            (None, None) => None,
            (Some(recipient), Some(purpose)) => Some(RouteRelease {
                recipient: recipient.get_ref().clone(),
                purpose: purpose.get_ref().clone(),
                // A SQLite path is taken from the configuration's directory.
                store: r.store.as_ref().map(|db| match db.contains("://") {
                    true => db.clone(),
                    false => base.join(db).display().to_string(),
                }),
            }),
            (Some(x), None) | (None, Some(x)) => {
                return Err(at(
                    x.span(),
                    "route.recipient",
                    "a consent-gated route names both a recipient and a purpose".into(),
                ))
            }
        },
        policy: r.policy.as_ref().map(|p| base.join(p.get_ref())),
        destinations: route_targets(r, base, at)?,
    })
}

/// The listener's TLS settings: certificate and key together, a client CA only with them.
fn listener_tls(
    raw: &RawListen,
    base: &Path,
    at: &At<'_>,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
    let (cert, key) = match (&raw.tls_cert, &raw.tls_key, &raw.tls_client_ca) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(k), _) => (c, k),
        (Some(x), None, _) | (None, Some(x), _) | (None, None, Some(x)) => {
            return Err(at(
                x.span(),
                "listen.tls_cert",
                "DICOM TLS needs both tls_cert and tls_key (PEM files)".into(),
            ))
        }
    };
    let ca = raw.tls_client_ca.as_ref().map(|c| base.join(c.get_ref()));
    crate::tls::server_config(
        &base.join(cert.get_ref()),
        &base.join(key.get_ref()),
        ca.as_deref(),
    )
    .map(Some)
    .map_err(|e| at(cert.span(), "listen.tls_cert", e.to_string()))
}

/// A route's destinations, with its TLS settings.
fn route_targets(r: &RawRoute, base: &Path, at: &At<'_>) -> Result<Vec<Target>, ConfigError> {
    let span = r.destination.span();
    let texts = match r.destination.get_ref() {
        OneOrMany::One(t) => vec![t.clone()],
        OneOrMany::Many(ts) => ts.clone(),
    };
    if texts.is_empty() {
        return Err(at(span, "route.destination", "no destination".into()));
    }
    let mut targets = Vec::new();
    for text in texts {
        let target = match text.starts_with("dicom") {
            true => text.parse().map(Target::Dimse),
            false => {
                crate::stow::StowDestination::new(&text, r.token_env.clone()).map(Target::Stow)
            }
        };
        let target = target.map_err(|m| at(span.clone(), "route.destination", m))?;
        if targets.contains(&target) {
            return Err(at(
                span,
                "route.destination",
                format!("{text} is listed twice"),
            ));
        }
        targets.push(with_client_tls(target, r, base, at)?);
    }
    Ok(targets)
}

/// Attaches a route's TLS settings to a `dicom+tls://` destination; refuses them elsewhere.
fn with_client_tls(
    target: Target,
    r: &RawRoute,
    base: &Path,
    at: &At<'_>,
) -> Result<Target, ConfigError> {
    let given = [&r.tls_ca, &r.tls_cert, &r.tls_key]
        .into_iter()
        .flatten()
        .next();
    let mut dest = match target {
        Target::Dimse(d) if d.secure => d,
        other => {
            return match given {
                None => Ok(other),
                Some(x) => Err(at(
                    x.span(),
                    "route.tls_ca",
                    "TLS settings need a dicom+tls:// destination".into(),
                )),
            }
        }
    };
    let identity = match (&r.tls_cert, &r.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((base.join(c.get_ref()), base.join(k.get_ref()))),
        (Some(x), None) | (None, Some(x)) => {
            return Err(at(
                x.span(),
                "route.tls_cert",
                "a client certificate needs both tls_cert and tls_key".into(),
            ))
        }
    };
    let ca = r.tls_ca.as_ref().map(|c| base.join(c.get_ref()));
    let span = given
        .map(|g| g.span())
        .unwrap_or_else(|| r.destination.span());
    let tls = crate::tls::ClientTls::load(
        ca.as_deref(),
        identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .map_err(|e| at(span, "route.tls_ca", e.to_string()))?;
    dest.tls = Some(tls);
    Ok(Target::Dimse(dest))
}

/// An AE title as PS3.8 allows it: 1–16 characters of the default repertoire, no backslash or
/// control character, not only spaces; kept without leading and trailing spaces.
fn checked_ae_title(raw: &Spanned<String>) -> Result<String, String> {
    let t = raw.get_ref().trim();
    if t.is_empty() || t.len() > 16 {
        return Err("an AE title has 1 to 16 characters".into());
    }
    if !t
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\')
    {
        return Err("an AE title holds printable ASCII characters other than a backslash".into());
    }
    Ok(t.to_string())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    #[serde(default)]
    allow: Vec<RawPeer>,
    spool: RawSpool,
    route: Option<OneOrMany<RawRoute>>,
}

/// A value written once or as a list: `[route]` or `[[route]]`, a destination or a list of
/// them. Read through the document's own deserializer, so spans still reach the fields.
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("one value or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let d = serde::de::value::StrDeserializer::<E>::new(v);
                T::deserialize(d).map(OneOrMany::One)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    destination: Spanned<OneOrMany<String>>,
    connections: Option<Spanned<i64>>,
    token_env: Option<String>,
    series_quiet_seconds: Option<Spanned<i64>>,
    recipient: Option<Spanned<String>>,
    purpose: Option<Spanned<String>>,
    store: Option<String>,
    tls_ca: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: Spanned<String>,
    ae_title: Spanned<String>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_client_ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    ae_title: Spanned<String>,
    address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: Spanned<String>,
    key: Option<Spanned<String>>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the gateway configuration: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[listen]\naddress = \"127.0.0.1:11112\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"CT1\"\naddress = \"10.0.0.7\"\n\n[[allow]]\nae_title = \"US2\"\n\n[spool]\ndir = \"spool\"\n";

    #[test]
    fn a_good_file_parses_and_lists_its_senders() {
        let c = GatewayConfig::parse(GOOD, "g.toml", Path::new("/etc/veil")).unwrap();
        assert_eq!(c.ae_title, "VEIL");
        assert_eq!(c.spool_dir, Path::new("/etc/veil/spool"));
        assert!(c.allows("CT1", "10.0.0.7".parse().unwrap()));
        assert!(!c.allows("CT1", "10.0.0.8".parse().unwrap()));
        assert!(c.allows("US2", "192.168.1.1".parse().unwrap()));
        assert!(!c.allows("EVIL", "10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_line_column_and_field() {
        let bad = GOOD.replace("\"10.0.0.7\"", "\"10.0.0\"");
        let e = GatewayConfig::parse(&bad, "g.toml", Path::new(".")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.toml:7:11: allow.address: not an IP address"
        );
        let unknown = GOOD.replace("[spool]\n", "[spool]\nfoo = 1\n");
        let e = GatewayConfig::parse(&unknown, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:13:1: gateway: unknown field `foo`"),
            "{e}"
        );
        let routed = format!("{GOOD}\n[route]\ndestination = \"dicom://PACS@10.0.0.9:104\"\n");
        let c = GatewayConfig::parse(&routed, "g.toml", Path::new(".")).unwrap();
        let route = c.routes.into_iter().next().expect("a route");
        assert_eq!(route.connections, 4);
        assert_eq!(
            route.destinations[0].to_string(),
            "dicom://PACS@10.0.0.9:104"
        );
        let web = routed.replace(
            "dicom://PACS@10.0.0.9:104",
            "http://10.0.0.9/dicom-web/studies",
        );
        let e = GatewayConfig::parse(&web, "g.toml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("use https"), "{e}");
        let zero = format!("{routed}connections = 0\n");
        let e = GatewayConfig::parse(&zero, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string()
                .contains("route.connections: between 1 and 16"),
            "{e}"
        );
        let bad = routed.replace("dicom://PACS@10.0.0.9:104", "PACS@10.0.0.9");
        let e = GatewayConfig::parse(&bad, "g.toml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("route.destination"), "{e}");
        let long = GOOD.replace("\"VEIL\"", "\"A_TITLE_LONGER_THAN_16\"");
        let e = GatewayConfig::parse(&long, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string().starts_with("g.toml:3:12: listen.ae_title:"),
            "{e}"
        );
    }

    #[test]
    fn tls_and_release_settings_are_checked_where_they_are_written() {
        let half = GOOD.replace(
            "ae_title = \"VEIL\"\n",
            "ae_title = \"VEIL\"\ntls_cert = \"g.crt\"\n",
        );
        let e = GatewayConfig::parse(&half, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string()
                .contains("listen.tls_cert: DICOM TLS needs both"),
            "{e}"
        );
        let both = half.replace(
            "tls_cert = \"g.crt\"\n",
            "tls_cert = \"g.crt\"\ntls_key = \"g.key\"\n",
        );
        let e = GatewayConfig::parse(&both, "g.toml", Path::new("/nonexistent")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/g.crt: cannot read"),
            "{e}"
        );
        let routed = format!("{GOOD}\n[route]\ndestination = \"dicom://PACS@10.0.0.9:104\"\n");
        let clear_with_ca = format!("{routed}tls_ca = \"ca.pem\"\n");
        let e = GatewayConfig::parse(&clear_with_ca, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string()
                .contains("TLS settings need a dicom+tls:// destination"),
            "{e}"
        );
        let secure = routed.replace("dicom://", "dicom+tls://");
        let c = GatewayConfig::parse(&secure, "g.toml", Path::new(".")).unwrap();
        assert_eq!(
            c.routes[0].destinations[0].to_string(),
            "dicom+tls://PACS@10.0.0.9:104"
        );
        let lone = format!("{routed}recipient = \"lab\"\n");
        let e = GatewayConfig::parse(&lone, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string().contains("both a recipient and a purpose"),
            "{e}"
        );
        let gated = format!("{lone}purpose = \"internal-research\"\nstore = \"v.db\"\n");
        let c = GatewayConfig::parse(&gated, "g.toml", Path::new("/etc/veil")).unwrap();
        let release = c.routes[0].release.clone().unwrap();
        assert_eq!(release.store.as_deref(), Some("/etc/veil/v.db"));
    }

    #[test]
    fn several_routes_and_destinations_make_one_lane_each() {
        let one = format!("{GOOD}\n[route]\ndestination = \"dicom://PACS@10.0.0.9:104\"\n");
        let c = GatewayConfig::parse(&one, "g.toml", Path::new(".")).unwrap();
        assert_eq!(c.lanes().len(), 1);
        assert!(
            c.lane_names().is_empty(),
            "one route to one destination: the spool's root"
        );
        let many = format!(
            "{GOOD}\n[[route]]\nname = \"research\"\ndestination = [\"dicom://A@10.0.0.9:104\", \"https://x.example/dicom-web/studies\"]\n\n[[route]]\ndestination = \"dicom://B@10.0.0.9:104\"\n"
        );
        let c = GatewayConfig::parse(&many, "g.toml", Path::new(".")).unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].name, "route2");
        assert_eq!(c.lane_names(), vec!["research-1", "research-2", "route2-1"]);
        let twice = many.replace(
            "https://x.example/dicom-web/studies",
            "dicom://A@10.0.0.9:104",
        );
        let e = GatewayConfig::parse(&twice, "g.toml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let same = many.replace(
            "[[route]]\ndestination",
            "[[route]]\nname = \"research\"\ndestination",
        );
        let e = GatewayConfig::parse(&same, "g.toml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("two routes are named"), "{e}");
        let slash = many.replace("\"research\"", "\"a/b\"");
        let e = GatewayConfig::parse(&slash, "g.toml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("route.name"), "{e}");
        // Spans survive the list form: the error points into the file.
        let bad = many.replace("dicom://B@10.0.0.9:104", "B@10.0.0.9");
        let e = GatewayConfig::parse(&bad, "g.toml", Path::new(".")).unwrap_err();
        assert!(
            e.to_string().starts_with("g.toml:20:15: route.destination"),
            "{e}"
        );
    }
}
