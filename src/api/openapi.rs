//! The OpenAPI 3.1 document, generated from the handlers (utoipa) and the event types
//! (schemars). Event payloads are the same JSON Schemas as in `events/`, so the API and the
//! event contract cannot disagree: utoipa names them, schemars describes them.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::problem::API_ERROR_CODES;

/// Implements `utoipa::ToSchema` for types whose schema comes from schemars: utoipa only needs
/// the name for `$ref`s; [`document`] fills in the schema.
macro_rules! schemars_bridge {
    ($($t:ty),* $(,)?) => {
        $(
            impl utoipa::PartialSchema for $t {
                fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                    utoipa::openapi::schema::Object::new().into()
                }
            }
            impl utoipa::ToSchema for $t {
                fn name() -> Cow<'static, str> {
                    <$t as JsonSchema>::schema_name()
                }
            }
        )*
        /// Registers every bridged type (and what it refers to) with the generator.
        fn register_bridged(generator: &mut schemars::SchemaGenerator) {
            $( generator.subschema_for::<$t>(); )*
        }
    };
}

use crate::domain::course::events::*;
schemars_bridge!(
    CourseOpened,
    PhaseChanged,
    CourseClosed,
    ParticipantAssigned,
    ParticipantUnassigned,
    ContactLogged,
    CheckInLogged,
    GuidanceSessionHeld,
    GoalSet,
    SubGoalSet,
    GoalProgressRecorded,
    GoalAchieved,
    GoalDropped,
    ActionAgreed,
    ActionCompleted,
    ActionRescheduled,
    ActionCancelled,
    PlacementStarted,
    PlacementEnded,
    MentorAgreementMade,
    MentorAgreementRenewed,
    AssessmentRecorded,
    SupportNeedRecorded,
    MeetingHeld,
    ContactPlanAgreed,
    EventCorrected,
    EventRetracted,
    crate::domain::company::CompanyRegistered,
    crate::domain::company::MentorRegistered,
    crate::domain::company::RelationalCapacityAssessed,
);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vivirk",
        description = "The shared record of long programmes for young people with cognitive and psychological \
            disabilities. Every write is an immutable event; reads come from projections. Errors are RFC 9457 \
            problems with a stable `code` (see `x-error-codes`).",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::courses::open_course,
        super::courses::assign_participant,
        super::courses::unassign_participant,
        super::courses::log_check_in,
        super::courses::log_contact,
        super::courses::hold_guidance_session,
        super::courses::record_meeting,
        super::courses::set_goal,
        super::courses::set_sub_goal,
        super::courses::record_goal_progress,
        super::courses::achieve_goal,
        super::courses::drop_goal,
        super::courses::agree_action,
        super::courses::complete_action,
        super::courses::reschedule_action,
        super::courses::cancel_action,
        super::courses::start_placement,
        super::courses::end_placement,
        super::courses::make_mentor_agreement,
        super::courses::renew_mentor_agreement,
        super::courses::record_assessment,
        super::courses::record_support_need,
        super::courses::agree_contact_plan,
        super::courses::correct_event,
        super::courses::retract_event,
        super::courses::change_phase,
        super::courses::close_course,
        super::courses::course_events,
        super::courses::verify_course,
        super::system::healthz,
        super::system::readyz,
        super::accounts::token,
        super::accounts::refresh,
        super::accounts::logout,
        super::accounts::jwks,
        super::accounts::me,
        super::accounts::change_password,
        super::accounts::create_account,
        super::accounts::list_accounts,
        super::accounts::disable_account,
        super::accounts::enable_account,
        super::accounts::delete_account,
        super::companies::register_company,
        super::companies::register_mentor,
        super::companies::assess_relational_capacity,
        super::companies::list_companies,
        super::companies::company,
        super::reads::list_courses,
        super::reads::course_status,
        super::reads::contact_history,
        super::reads::contact_frequency,
        super::reads::course_actions,
        super::reads::course_state,
        super::reads::my_courses,
        super::reads::my_actions,
        super::reads::contact_worklist,
        super::reads::sync,
        super::audit::course_record,
        super::audit::latest_checkpoint,
        super::audit::checkpoint_key,
        super::audit::access_log,
        super::audit::my_access_log,
        super::audit::sweep_access_log,
    ),
    components(schemas(
        super::problem::Problem,
        crate::app::Written,
        super::courses::WriteMetaDoc,
        super::accounts::TokenPairDoc,
        super::accounts::AccountViewDoc,
        super::accounts::NewAccountDoc,
    )),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The whole document as JSON.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    register_bridged(&mut generator);
    let schemas = &mut doc["components"]["schemas"];
    for (name, schema) in generator.take_definitions(true) {
        schemas[name] = schema;
    }
    request_variants(&mut doc);
    doc["x-error-codes"] = Value::Array(
        API_ERROR_CODES
            .iter()
            .map(|(code, status, meaning)| json!({"code": code, "status": status, "meaning": meaning}))
            .chain(
                crate::domain::ERROR_CODES
                    .iter()
                    .map(|(code, meaning)| json!({"code": code, "status": "409/403/422", "meaning": meaning})),
            )
            .chain(crate::auth::AuthError::CODES.iter().map(|(code, status)| json!({"code": code, "status": status})))
            .collect(),
    );
    doc
}

/// Ids of new things the server generates when a write body has none.
const GENERATED_IDS: [&str; 5] = ["course_id", "goal_id", "action_id", "placement_id", "agreement_id"];

/// Write bodies are an event's fields plus write metadata, with ids from the path or generated
/// ones optional: give each such operation a `{Event}Request` schema that says exactly that.
fn request_variants(doc: &mut Value) {
    let meta = json!({
        "event_id": {"type": ["string", "null"], "format": "uuid",
            "description": "The client's id for this event; a retry with the same id appends nothing."},
        "occurred_at": {"type": ["string", "null"], "format": "date-time",
            "description": "When it happened (RFC 3339), if not now."},
        "device_id": {"type": ["string", "null"], "maxLength": 128, "description": "The recording device."}
    });
    let mut new_schemas = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(op) = item.get_mut("post") else { continue };
            let schema = &mut op["requestBody"]["content"]["application/json"]["schema"];
            let Some(name) =
                schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")).map(str::to_owned)
            else {
                continue;
            };
            let path_params: Vec<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            let optional: Vec<String> = GENERATED_IDS.iter().map(|s| s.to_string()).chain(path_params).collect();
            let request_name = format!("{name}Request");
            *schema = json!({"$ref": format!("#/components/schemas/{request_name}")});
            new_schemas.push((name, request_name, optional));
        }
    }
    for (name, request_name, optional) in new_schemas {
        let mut s = doc["components"]["schemas"][&name].clone();
        if let Some(props) = s["properties"].as_object_mut()
            && let Some(m) = meta.as_object()
        {
            for (k, v) in m {
                props.insert(k.clone(), v.clone());
            }
        }
        if let Some(req) = s["required"].as_array_mut() {
            req.retain(|f| f.as_str().is_none_or(|f| !optional.iter().any(|o| o == f)));
        }
        doc["components"]["schemas"][request_name] = s;
    }
}

/// Pretty JSON with a trailing newline, as committed in `openapi/openapi.json`.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    /// The committed `openapi/openapi.json` must be what the code generates. Regenerate with
    /// `cargo run -- openapi` (or `VIVIRK_BLESS=1 cargo test`).
    #[test]
    fn committed_spec_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
        let generated = super::document_text();
        if std::env::var_os("VIVIRK_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == generated, "openapi/openapi.json is stale: run `cargo run -- openapi` and commit it");
    }

    #[test]
    fn every_operation_documents_errors_and_security() {
        let doc = super::document();
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() > 25);
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} documents no responses");
                if path.starts_with("/v1/") {
                    assert!(op.get("security").is_some(), "{method} {path} has no security");
                    assert!(responses.keys().any(|s| s.starts_with('4')), "{method} {path} documents no errors");
                }
            }
        }
        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref {name}");
        }
    }
}
