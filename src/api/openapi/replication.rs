//! The OpenAPI description of replication: peers and sync rounds under
//! `/api/v1`, and the `/sync/v1` protocol peers speak (binary frames, bearer
//! tokens).

use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, PathItem, PathsBuilder, RefOr, Required,
    ResponseBuilder,
};

use super::{json_body, json_response, limit_param, path_item, problem, query, schema_ref, string};
use crate::api::peers::{NewPeer, RunRequest, RunResponse, StatusResponse};
use crate::api::sync_protocol::SyncInfo;
use crate::replication::http_transport::{PushAnswer, FRAME_MEDIA_TYPE, PROTOCOL_HEADER};
use crate::replication::{PeerStatus, PeerView, RoundResult, StepView};

const SECURITY: &str = "peerToken";

pub fn components(components: ComponentsBuilder) -> ComponentsBuilder {
    components
        .schema_from::<NewPeer>()
        .schema_from::<PeerView>()
        .schema_from::<RunRequest>()
        .schema_from::<RunResponse>()
        .schema_from::<RoundResult>()
        .schema_from::<StepView>()
        .schema_from::<StatusResponse>()
        .schema_from::<PeerStatus>()
        .schema_from::<crate::replication::status::PeerState>()
        .schema_from::<SyncInfo>()
        .schema_from::<PushAnswer>()
        .security_scheme(
            SECURITY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A secret issued by `crm-node token create` on this node.",
                    ))
                    .build(),
            ),
        )
}

pub fn paths(paths: PathsBuilder) -> PathsBuilder {
    paths
        .path(
            "/api/v1/peers",
            path_item([
                (HttpMethod::Get, list_peers()),
                (HttpMethod::Post, add_peer()),
            ]),
        )
        .path(
            "/api/v1/peers/{name}",
            PathItem::new(HttpMethod::Delete, remove_peer()),
        )
        .path("/api/v1/sync/run", PathItem::new(HttpMethod::Post, run()))
        .path(
            "/api/v1/sync/status",
            PathItem::new(HttpMethod::Get, status()),
        )
        .path("/sync/v1/info", PathItem::new(HttpMethod::Get, info()))
        .path("/sync/v1/feed", PathItem::new(HttpMethod::Get, feed()))
        .path(
            "/sync/v1/snapshots",
            PathItem::new(HttpMethod::Get, snapshots()),
        )
        .path("/sync/v1/changes", PathItem::new(HttpMethod::Post, push()))
}

fn body_problems(op: OperationBuilder) -> OperationBuilder {
    op.response("400", problem("The body is not JSON."))
        .response("413", problem("The body is too large."))
        .response("415", problem("The body is not application/json."))
        .response(
            "422",
            problem("A member is missing, unknown or has a bad value."),
        )
}

fn list_peers() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("list_peers"))
        .tag("replication")
        .summary(Some("Peers this node replicates with"))
        .response(
            "200",
            json_response(
                "The peers.",
                RefOr::T(ArrayBuilder::new().items(schema_ref("PeerView")).into()),
            ),
        )
}

fn add_peer() -> OperationBuilder {
    let mut created = json_response("Added.", schema_ref("PeerView"));
    created.headers.insert(
        "Location".into(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(string())
            .description(Some("The peer's URL."))
            .build(),
    );
    body_problems(
        OperationBuilder::new()
            .operation_id(Some("add_peer"))
            .tag("replication")
            .summary(Some("Add a peer to replicate with"))
            .request_body(Some(json_body("NewPeer", true)))
            .response("201", created)
            .response("409", problem("A peer with this name exists.")),
    )
}

fn remove_peer() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("remove_peer"))
        .tag("replication")
        .summary(Some("Stop replicating with a peer"))
        .parameter(
            ParameterBuilder::new()
                .name("name")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string())),
        )
        .response(
            "204",
            ResponseBuilder::new().description("Removed.").build(),
        )
        .response("404", problem("No peer has this name."))
}

fn run() -> OperationBuilder {
    body_problems(
        OperationBuilder::new()
            .operation_id(Some("sync_run"))
            .tag("replication")
            .summary(Some("Run one sync round now and report what moved"))
            .description(Some(
                "Pulls from each peer (or the one named) until caught up, then pushes until \
                 caught up. A peer that fails is reported with ok=false; the others still run.",
            ))
            .request_body(Some(json_body("RunRequest", false)))
            .response(
                "200",
                json_response("What moved.", schema_ref("RunResponse")),
            )
            .response("404", problem("No peer has this name.")),
    )
}

fn status() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("sync_status"))
        .tag("replication")
        .summary(Some("How replication with each peer is doing"))
        .response(
            "200",
            json_response("Per-peer status.", schema_ref("StatusResponse")),
        )
}

/// An operation of the peer protocol: token and version header required.
fn protocol_op(id: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(id))
        .tag("sync-protocol")
        .summary(Some(summary))
        .security(SecurityRequirement::new(SECURITY, Vec::<String>::new()))
        .parameter(
            ParameterBuilder::new()
                .name(PROTOCOL_HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(
                    "The replication protocol version the caller speaks: 1.",
                ))
                .schema(Some(string().enum_values(Some(["1"])))),
        )
        .response(
            "400",
            problem("Another protocol version, or a bad parameter or frame."),
        )
        .response("401", problem("The token is missing, unknown or revoked."))
}

fn frame_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            FRAME_MEDIA_TYPE,
            ContentBuilder::new().schema(Some(binary())).build(),
        )
        .build()
}

fn binary() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
}

fn kinds_param() -> utoipa::openapi::path::Parameter {
    query(
        "kinds",
        string().pattern(Some("^[a-z0-9_,]*$")),
        "Only these kinds (comma-separated); all by default.",
    )
}

fn info() -> OperationBuilder {
    protocol_op("sync_info", "Who this node is and where its feed stands")
        .response("200", json_response("This node.", schema_ref("SyncInfo")))
}

fn feed() -> OperationBuilder {
    let whole = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    protocol_op("sync_feed", "A page of this node's change feed")
        .description(Some(
            "Changes with a seq above `since`, in seq order, as a binary frame (format in \
             ARCHITECTURE.md). Waits up to `wait` seconds when nothing is new.",
        ))
        .parameter(query(
            "since",
            whole(0, i64::MAX),
            "Last seq already applied.",
        ))
        .parameter(limit_param(10_000, "Feed rows scanned at most."))
        .parameter(query("wait", whole(0, 60), "Long-poll seconds."))
        .parameter(query(
            "requester",
            string().pattern(Some("^[0-9a-fA-F]{40}$")),
            "The caller's node id and epoch: its own changes are skipped.",
        ))
        .parameter(kinds_param())
        .response("200", frame_response("A frame of changes."))
}

fn snapshots() -> OperationBuilder {
    protocol_op(
        "sync_snapshots",
        "A page of compacted documents (first sync)",
    )
    .parameter(query(
        "after",
        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        "Documents with an id above this one.",
    ))
    .parameter(limit_param(10_000, "Documents per page."))
    .parameter(kinds_param())
    .parameter(query(
        "ids",
        string().pattern(Some(
            "^[0-9a-fA-F-]{36}(,[0-9a-fA-F-]{36}){0,99}$",
        )),
        "Only these documents (comma-separated ids, at most 100); `after` is then ignored. A peer asks for documents whose changes reached it before them.",
    ))
    .response("200", frame_response("A frame of documents."))
}

fn push() -> OperationBuilder {
    protocol_op("sync_push", "Push a batch of changes")
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    FRAME_MEDIA_TYPE,
                    ContentBuilder::new().schema(Some(binary())).build(),
                )
                .build(),
        ))
        .response(
            "200",
            json_response("What was applied.", schema_ref("PushAnswer")),
        )
        .response(
            "413",
            problem("The batch is larger than this node accepts."),
        )
        .response("415", problem("The body is not a frame."))
        .response(
            "422",
            problem("The batch was refused whole (unknown kind, undecodable change)."),
        )
}
