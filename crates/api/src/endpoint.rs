//! The gateway's base URL and its send endpoints.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::error::BuildError;

/// The production gateway.
pub const DEFAULT_BASE_URL: &str = "https://gateway.lipachat.com";

/// A send endpoint, under `{base}/api/v1/whatsapp/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /api/v1/whatsapp/contact`: a contact card.
    Contact,
    /// `POST /api/v1/whatsapp/template`: an approved template.
    Template,
    /// `POST /api/v1/whatsapp/message/text`: a text message.
    Text,
    /// `POST /api/v1/whatsapp/media`: an image, video, audio, document or sticker by URL.
    Media,
    /// `POST /api/v1/whatsapp/interactive/buttons`: text with reply buttons.
    Buttons,
    /// `POST /api/v1/whatsapp/interactive/list`: a list of rows in sections.
    List,
    /// `POST /api/v1/whatsapp/request_location`: a request for the customer's location.
    LocationRequest,
    /// `POST /api/v1/whatsapp/interactive/flows`: a WhatsApp Flow.
    Flow,
}

impl Endpoint {
    /// The path, from the root of the gateway's host (`/api/v1/whatsapp/contact`).
    pub fn path(self) -> &'static str {
        match self {
            Self::Contact => "/api/v1/whatsapp/contact",
            Self::Template => "/api/v1/whatsapp/template",
            Self::Text => "/api/v1/whatsapp/message/text",
            Self::Media => "/api/v1/whatsapp/media",
            Self::Buttons => "/api/v1/whatsapp/interactive/buttons",
            Self::List => "/api/v1/whatsapp/interactive/list",
            Self::LocationRequest => "/api/v1/whatsapp/request_location",
            Self::Flow => "/api/v1/whatsapp/interactive/flows",
        }
    }

    /// A short name for logs: `contact`, `template`, `text`, `media`, `buttons`, `list`,
    /// `location_request` or `flow`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Template => "template",
            Self::Text => "text",
            Self::Media => "media",
            Self::Buttons => "buttons",
            Self::List => "list",
            Self::LocationRequest => "location_request",
            Self::Flow => "flow",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A checked, normalised gateway base URL.
///
/// Accepts `https://host[:port][/prefix]`, with or without a trailing `/`, `/api/v1` or
/// `/api/v1/whatsapp` (all normalised away). Refuses user names, passwords, queries and
/// fragments. Plain `http://` is accepted only for a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`), decided from the URL alone, before any name lookup or connection.
///
/// ```
/// use lipachat_api::{BaseUrl, Endpoint};
///
/// let base = BaseUrl::parse("https://gateway.lipachat.com/api/v1/")?;
/// assert_eq!(base.as_str(), "https://gateway.lipachat.com");
/// assert_eq!(
///     base.endpoint_url(Endpoint::Contact),
///     "https://gateway.lipachat.com/api/v1/whatsapp/contact"
/// );
/// assert!(BaseUrl::parse("http://127.0.0.1:8080").is_ok());
/// assert!(BaseUrl::parse("http://gateway.lipachat.com").is_err());
/// # Ok::<(), lipachat_api::BuildError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// `scheme://host[:port][/prefix]`, no trailing `/`.
    base: String,
    plain_http: bool,
}

impl BaseUrl {
    /// Checks and normalises a base URL.
    pub fn parse(input: &str) -> Result<Self, BuildError> {
        let invalid = |reason: &str| BuildError::InvalidBaseUrl {
            reason: reason.to_owned(),
        };
        let url = Url::parse(input.trim()).map_err(|_| {
            invalid("not an absolute URL; expected one such as https://gateway.lipachat.com")
        })?;
        let plain_http = match url.scheme() {
            "https" => false,
            "http" => true,
            _ => return Err(invalid("the scheme must be https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "a user name or password in the URL is not allowed (the key goes in the apiKey header)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let Some(host) = url.host() else {
            return Err(invalid("the URL has no host"));
        };
        if plain_http && !is_loopback(&host) {
            return Err(BuildError::InsecureBaseUrl {
                host: host.to_string(),
            });
        }
        let mut prefix = url.path().trim_end_matches('/');
        for suffix in ["/api/v1/whatsapp", "/api/v1"] {
            if let Some(rest) = prefix.strip_suffix(suffix) {
                prefix = rest.trim_end_matches('/');
                break;
            }
        }
        let mut base = format!("{}://{}", url.scheme(), host);
        if let Some(port) = url.port() {
            base.push_str(&format!(":{port}"));
        }
        base.push_str(prefix);
        Ok(Self { base, plain_http })
    }

    /// The normalised base, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The full URL of an endpoint.
    pub fn endpoint_url(&self, endpoint: Endpoint) -> String {
        format!("{}{}", self.base, endpoint.path())
    }

    /// Whether this is a plain `http://` (loopback) URL.
    pub fn is_plain_http(&self) -> bool {
        self.plain_http
    }
}

/// The send endpoints' URLs, parsed once when a client is built, so a send does not
/// format and parse its URL again on every attempt.
#[derive(Debug, Clone)]
pub(crate) struct EndpointUrls {
    contact: Url,
    template: Url,
    text: Url,
    media: Url,
    buttons: Url,
    list: Url,
    location_request: Url,
    flow: Url,
}

impl EndpointUrls {
    /// The endpoints under `base`.
    pub(crate) fn new(base: &BaseUrl) -> Result<Self, BuildError> {
        let parse = |endpoint: Endpoint| {
            Url::parse(&base.endpoint_url(endpoint)).map_err(|_| BuildError::InvalidBaseUrl {
                reason: format!("the {endpoint} endpoint under this base is not a valid URL"),
            })
        };
        Ok(Self {
            contact: parse(Endpoint::Contact)?,
            template: parse(Endpoint::Template)?,
            text: parse(Endpoint::Text)?,
            media: parse(Endpoint::Media)?,
            buttons: parse(Endpoint::Buttons)?,
            list: parse(Endpoint::List)?,
            location_request: parse(Endpoint::LocationRequest)?,
            flow: parse(Endpoint::Flow)?,
        })
    }

    /// The URL of `endpoint`.
    pub(crate) fn get(&self, endpoint: Endpoint) -> &Url {
        match endpoint {
            Endpoint::Contact => &self.contact,
            Endpoint::Template => &self.template,
            Endpoint::Text => &self.text,
            Endpoint::Media => &self.media,
            Endpoint::Buttons => &self.buttons,
            Endpoint::List => &self.list,
            Endpoint::LocationRequest => &self.location_request,
            Endpoint::Flow => &self.flow,
        }
    }
}

impl Default for BaseUrl {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE_URL.to_owned(),
            plain_http: false,
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.base)
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => Ipv4Addr::is_loopback(ip),
        Host::Ipv6(ip) => Ipv6Addr::is_loopback(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        for input in [
            "https://gateway.lipachat.com",
            "https://gateway.lipachat.com/",
            "https://gateway.lipachat.com/api/v1",
            "https://gateway.lipachat.com/api/v1/",
            " https://gateway.lipachat.com/api/v1/whatsapp/ ",
            "HTTPS://Gateway.LipaChat.com",
        ] {
            assert_eq!(
                BaseUrl::parse(input).unwrap().as_str(),
                "https://gateway.lipachat.com",
                "{input}"
            );
        }
        assert_eq!(
            BaseUrl::parse("https://proxy.example:8443/lipachat/api/v1")
                .unwrap()
                .endpoint_url(Endpoint::Text),
            "https://proxy.example:8443/lipachat/api/v1/whatsapp/message/text"
        );
        assert_eq!(
            BaseUrl::parse("http://[::1]:9000/").unwrap().as_str(),
            "http://[::1]:9000"
        );
        assert_eq!(BaseUrl::default().as_str(), DEFAULT_BASE_URL);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:1",
            "http://127.8.9.10",
            "http://[::1]",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            let base = BaseUrl::parse(ok).unwrap();
            assert!(base.is_plain_http(), "{ok}");
        }
        for refused in [
            "http://example.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://[::2]",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(
                matches!(
                    BaseUrl::parse(refused),
                    Err(BuildError::InsecureBaseUrl { .. })
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn malformed_bases() {
        for bad in [
            "s3cret-gateway.example",
            "ftp://s3cret.example",
            "https://user:s3cret@gateway.lipachat.com",
            "https://gateway.lipachat.com/?apiKey=s3cret",
            "https://gateway.lipachat.com/#s3cret",
            "",
        ] {
            let err = BaseUrl::parse(bad).unwrap_err();
            assert!(matches!(err, BuildError::InvalidBaseUrl { .. }), "{bad}");
            // The input is never echoed: it might be a misplaced secret.
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}
