//! The load loops' HTTP/1.1 client: keep-alive connections in a plain
//! pool, requests built from parts prepared once (the target, the headers,
//! the body's bytes).
//!
//! The harness shares the machine's two cores with the node it measures,
//! so every microsecond the client spends is one the node lacks. Through
//! reqwest a GET cost the harness about 60 µs of CPU (its pool keyed by
//! host, URL to URI conversion, default headers merged, redirect and
//! timeout layers): during GET by id the harness took three quarters of a
//! core beside the node's one and a tenth. This client does what a load
//! loop needs and nothing else; `api.rs` keeps reqwest for everything
//! that is not a load loop.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;

use crate::api::REQUEST_TIMEOUT;

/// What a load loop sends: a method, a target and (for a POST) a JSON body.
#[derive(Clone)]
pub struct Target {
    method: Method,
    uri: Uri,
    body: Option<Bytes>,
}

impl Target {
    /// A GET of `url` (its path and query; the host is the client's).
    pub fn get(url: &Url) -> anyhow::Result<Target> {
        Ok(Target {
            method: Method::GET,
            uri: origin_form(url)?,
            body: None,
        })
    }

    /// A POST of `json` to `url`.
    pub fn post_json(url: &Url, json: &serde_json::Value) -> anyhow::Result<Target> {
        Ok(Target {
            method: Method::POST,
            uri: origin_form(url)?,
            body: Some(Bytes::from(
                serde_json::to_vec(json).context("encoding a JSON body")?,
            )),
        })
    }
}

/// The path and query of `url`, as an HTTP/1.1 request target.
fn origin_form(url: &Url) -> anyhow::Result<Uri> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    target
        .parse()
        .with_context(|| format!("{target:?} is not a request target"))
}

type Connection = SendRequest<Full<Bytes>>;

/// A client of one node: a loopback address and, when logged in, a
/// session token sent with every request.
pub struct LeanClient {
    address: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    idle: Mutex<Vec<Connection>>,
}

impl LeanClient {
    /// A client of the node at `base` (`http://host:port`).
    pub fn new(base: &Url, token: Option<&str>) -> anyhow::Result<LeanClient> {
        ensure!(base.scheme() == "http", "the load client speaks plain HTTP");
        let address = *base
            .socket_addrs(|| None)
            .with_context(|| format!("resolving {base}"))?
            .first()
            .with_context(|| format!("{base} names no address"))?;
        let host = base
            .host_str()
            .map(|host| match base.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
            .context("the base URL has no host")?;
        let authorization = token
            .map(|token| HeaderValue::try_from(format!("Bearer {token}")))
            .transpose()
            .context("a session token is a valid header value")?;
        Ok(LeanClient {
            address,
            host: HeaderValue::try_from(host).context("a host is a valid header value")?,
            authorization,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `target`, reads the whole answer (so its connection can be
    /// used again) and fails unless it is a success; the message names
    /// the status and the start of the body. Answers the body's length.
    pub async fn send(&self, target: &Target) -> Result<usize, String> {
        let mut request = Request::builder()
            .method(target.method.clone())
            .uri(target.uri.clone())
            .header(HOST, self.host.clone());
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if target.body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(target.body.clone().unwrap_or_default()))
            .map_err(|e| format!("building a request: {e}"))?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
        let (status, body) = answer;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("{status}: {}", crate::api::excerpt(&text)));
        }
        Ok(body.len())
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut connection = match self.take_idle() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let response = connection
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        // A connection whose answer failed is dropped above; one the node
        // closed is not ready and is dropped here.
        if connection.is_ready() {
            self.put_idle(connection);
        }
        Ok((status, body))
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(connection) = idle.pop() {
            if !connection.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    fn put_idle(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(connection);
    }

    async fn connect(&self) -> Result<Connection, String> {
        let stream = tokio::net::TcpStream::connect(self.address)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.address))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.address))?;
        // The connection's I/O runs on a task of its own until either side
        // closes it; its error, if any, reaches the request that was on it.
        tokio::spawn(async move {
            let _closed = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_keeps_the_path_and_query_only() {
        let url = Url::parse_with_params("http://127.0.0.1:8700/api/v1/search", &[("q", "Казань")])
            .expect("a URL");
        let target = Target::get(&url).expect("a target");
        assert_eq!(
            target.uri.to_string(),
            "/api/v1/search?q=%D0%9A%D0%B0%D0%B7%D0%B0%D0%BD%D1%8C"
        );
        assert!(target.body.is_none());
    }

    #[test]
    fn a_client_sends_its_host_with_the_port() {
        let base = Url::parse("http://127.0.0.1:8700").expect("a URL");
        let client = LeanClient::new(&base, Some("t0ken")).expect("a client");
        assert_eq!(client.host, "127.0.0.1:8700");
        assert_eq!(
            client.authorization.as_ref().map(HeaderValue::as_bytes),
            Some(&b"Bearer t0ken"[..])
        );
        assert!(LeanClient::new(&Url::parse("https://127.0.0.1:1").expect("a URL"), None).is_err());
    }
}
