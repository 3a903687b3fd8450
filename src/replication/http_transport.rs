//! The replication client over HTTP(S): turns the protocol's requests into
//! `/sync/v1` calls on a peer with reqwest (rustls), and its answers back
//! into frames. No replication logic lives here.

use std::time::Duration;

use crm_sync::feed::SnapshotQuery;
use crm_sync::frame::{Frame, Sender, PROTOCOL_VERSION};
use crm_sync::replicate::{FeedRequest, PushReply, Transport, TransportError};
use crm_sync::ApplyReport;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, Response, Url};
use serde::Deserialize;

/// The header every `/sync/v1` request carries: the protocol version the
/// caller speaks.
pub const PROTOCOL_HEADER: &str = "crm-sync-protocol";
pub const FRAME_MEDIA_TYPE: &str = "application/vnd.crm-node.frame";

/// Time allowed on top of a long-poll's wait for the answer to arrive.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// Checks a peer URL as typed by a user: http or https, a host, no query.
/// Returns it without a trailing slash.
pub fn parse_peer_url(raw: &str) -> Result<String, String> {
    if raw.len() > 2048 {
        return Err("the URL is longer than 2048 characters".into());
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{raw}`: the URL must start with http:// or https://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}`: the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "`{raw}`: give the node's base URL only, without credentials, query or fragment"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

pub struct HttpTransport {
    client: Client,
    base: String,
    token: String,
}

impl HttpTransport {
    pub fn new(client: Client, base: &str, token: &str) -> HttpTransport {
        HttpTransport {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/sync/v1/{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, TransportError> {
        let response = request.send().await.map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<ProblemBody>(&body)
            .map(|p| p.detail)
            .unwrap_or(body);
        Err(TransportError::Refused { status, detail })
    }

    async fn frame(&self, request: RequestBuilder) -> Result<(Frame, u64), TransportError> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(unreachable)?;
        let frame = Frame::decode(&bytes).map_err(|e| TransportError::BadAnswer(e.to_string()))?;
        Ok((frame, bytes.len() as u64))
    }
}

fn unreachable(e: reqwest::Error) -> TransportError {
    // reqwest's Display hides the cause ("error sending request"); the
    // chain says what happened (refused, timed out, TLS).
    let mut message = e.to_string();
    let mut certificate_refused = false;
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        certificate_refused |= is_certificate_error(cause);
        source = cause.source();
    }
    if certificate_refused {
        TransportError::Untrusted(message)
    } else {
        TransportError::Unreachable(message)
    }
}

/// Whether `cause` is rustls refusing the peer's certificate. The rustls
/// error arrives wrapped in `io::Error`s (by tokio-rustls, then
/// hyper-rustls), whose `source()` skips what they wrap, so they are
/// unwrapped here.
fn is_certificate_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_rustls::rustls;
    let mut current = cause;
    loop {
        if let Some(error) = current.downcast_ref::<rustls::Error>() {
            return matches!(error, rustls::Error::InvalidCertificate(_));
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

#[derive(Deserialize)]
struct ProblemBody {
    detail: String,
}

/// The answer to a push, as `/sync/v1/changes` sends it.
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct PushAnswer {
    /// The receiving node and epoch (40 hex digits).
    pub receiver: String,
    pub applied: u64,
    pub duplicates: u64,
    pub held: u64,
    pub released: u64,
    pub documents: u64,
    /// Changes refused: their records are outside the pushing peer's
    /// scope. The rest of the batch applied.
    #[serde(default)]
    pub rejected: u64,
}

impl PushAnswer {
    pub fn new(receiver: Sender, report: ApplyReport) -> PushAnswer {
        PushAnswer {
            receiver: receiver.to_hex(),
            applied: report.applied,
            duplicates: report.duplicates,
            held: report.held,
            released: report.released,
            documents: report.documents,
            rejected: report.rejected,
        }
    }
}

impl Transport for HttpTransport {
    async fn feed(&self, request: &FeedRequest) -> Result<(Frame, u64), TransportError> {
        let q = &request.query;
        let mut params = vec![
            ("since", q.since.to_string()),
            ("limit", q.limit.to_string()),
            ("wait", request.wait.as_secs().to_string()),
        ];
        if let Some(requester) = q.requester {
            params.push(("requester", requester.to_hex()));
        }
        if let Some(kinds) = &q.kinds {
            params.push(("kinds", kinds.iter().cloned().collect::<Vec<_>>().join(",")));
        }
        let request = self
            .request(reqwest::Method::GET, "feed")
            .query(&params)
            .timeout(request.wait + ANSWER_MARGIN);
        self.frame(request).await
    }

    async fn snapshots(&self, query: &SnapshotQuery) -> Result<(Frame, u64), TransportError> {
        let mut params = vec![("limit", query.limit.to_string())];
        if let Some(after) = query.after {
            params.push(("after", after.to_string()));
        }
        if let Some(kinds) = &query.kinds {
            params.push(("kinds", kinds.iter().cloned().collect::<Vec<_>>().join(",")));
        }
        if !query.ids.is_empty() {
            let ids: Vec<String> = query.ids.iter().map(ToString::to_string).collect();
            params.push(("ids", ids.join(",")));
        }
        let request = self
            .request(reqwest::Method::GET, "snapshots")
            .query(&params)
            .timeout(ANSWER_MARGIN * 4);
        self.frame(request).await
    }

    async fn push(&self, frame: &Frame) -> Result<(PushReply, u64), TransportError> {
        let body = frame.encode();
        let sent = body.len() as u64;
        let request = self
            .request(reqwest::Method::POST, "changes")
            .header(CONTENT_TYPE, FRAME_MEDIA_TYPE)
            .body(body)
            .timeout(ANSWER_MARGIN * 4);
        let response = self.send(request).await?;
        let text = response.bytes().await.map_err(unreachable)?;
        let answer: PushAnswer =
            serde_json::from_slice(&text).map_err(|e| TransportError::BadAnswer(e.to_string()))?;
        let receiver = Sender::from_hex(&answer.receiver)
            .ok_or_else(|| TransportError::BadAnswer("receiver is not a node and epoch".into()))?;
        Ok((
            PushReply {
                receiver,
                report: ApplyReport {
                    applied: answer.applied,
                    duplicates: answer.duplicates,
                    held: answer.held,
                    released: answer.released,
                    documents: answer.documents,
                    rejected: answer.rejected,
                },
            },
            sent + text.len() as u64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked() {
        assert_eq!(
            parse_peer_url("http://127.0.0.1:8640/").as_deref(),
            Ok("http://127.0.0.1:8640")
        );
        assert_eq!(
            parse_peer_url("https://hq.example.com/crm").as_deref(),
            Ok("https://hq.example.com/crm")
        );
        for bad in ["ftp://x", "hq", "http://u:p@x", "http://x/?a=1", ""] {
            assert!(parse_peer_url(bad).is_err(), "{bad}");
        }
    }
}
