//! A JSON body extractor whose errors name the field at fault, and the serde helper for
//! members where `null` and absent mean different things.
//!
//! axum's `Json` flattens its errors into text; this one keeps the JSON path
//! (`serde_path_to_error`) so the problem document can carry it in `field`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::error::Category;

use super::problem::ApiError;

/// Like `axum::Json`, but rejects with [`ApiError`]: 415 without a JSON content type, 400
/// for malformed JSON, 422 for JSON of the wrong shape (wrong type, missing or unknown
/// field), each naming the field.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
                _ => ApiError::Body(rejection),
            }
        })?;
        parse(&body).map(ApiJson)
    }
}

/// `null` → `Some(None)`, absent → `None` (with `#[serde(default)]`), a value →
/// `Some(Some(v))`: what a PATCH needs to tell "clear it" from "leave it".
pub(crate) fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `application/json` or any `application/*+json` (RFC 6839 §3.1), parameters ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The body as `T`. It is read as a JSON value first: malformed JSON is a 400 naming
/// where it broke, a string holding U+0000 a 422 naming it, and a whole number written
/// with a fraction (`766.0`, an integer to JSON Schema) counts as that integer. Then the
/// value is deserialized into `T`, a 422 naming the field on a mismatch.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut value = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => value,
        Err(_) => return Err(syntax_error::<T>(body)),
    };
    if let Some(path) = path_of_nul(&value) {
        // Issue 10: no text field needs it, and PostgreSQL cannot store it (a server
        // error there, accepted on SQLite).
        return Err(ApiError::invalid_field(
            if path.is_empty() {
                ".".to_string()
            } else {
                path
            },
            "text must not contain the NUL character (U+0000)",
        ));
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        // A key that did not parse shows as a trailing `?`; name its object instead.
        let path = error.path().to_string();
        let path = path.trim_end_matches('?').trim_end_matches('.');
        body_error(if path.is_empty() { "." } else { path }, error.into_inner())
    })
}

/// The error of a body that is not JSON, naming the field parsing stopped in (reading
/// it as `T` directly tells where).
fn syntax_error<T: DeserializeOwned>(body: &[u8]) -> ApiError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => {
            let path = error.path().to_string();
            let path = path.trim_end_matches('?').trim_end_matches('.');
            body_error(if path.is_empty() { "." } else { path }, error.into_inner())
        }
        // Trailing characters after the value make the document invalid JSON.
        Ok(_) => match deserializer.end() {
            Err(error) => body_error(".", error),
            Ok(()) => ApiError::Invalid {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: None,
                detail: "the body is not JSON".to_string(),
            },
        },
    }
}

/// `766.0` → `766`, for every number in `value` that is a whole number in range.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::{Number, Value};
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float.fract() == 0.0 && float.abs() < 9.0e15 {
                // Exactly representable in both: |float| < 2^53.
                *number = Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// The path (`title`, `tags[2]`, `ingest.rtsp_source.url`) of the first string or object
/// key holding U+0000.
fn path_of_nul(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let join = |prefix: &str, rest: Option<String>| -> String {
        match rest {
            Some(rest) if rest.starts_with('[') => format!("{prefix}{rest}"),
            Some(rest) if !rest.is_empty() => format!("{prefix}.{rest}"),
            _ => prefix.to_string(),
        }
    };
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path_of_nul(item).map(|rest| join(&format!("[{i}]"), Some(rest)))
        }),
        Value::Object(members) => members.iter().find_map(|(key, member)| {
            if key.contains('\0') {
                return Some(key.replace('\0', "\\u0000"));
            }
            path_of_nul(member).map(|rest| join(key, Some(rest)))
        }),
        _ => None,
    }
}

/// `path` is where deserializing stopped, `.` for the top level.
fn body_error(path: &str, error: serde_json::Error) -> ApiError {
    let message = error.to_string();
    // serde words a missing field as "missing field `title`" and reports it at the
    // enclosing object's path, so the name comes from the message.
    let missing = backticked_name_after(&message, "missing field `");
    let field = match (path, missing) {
        (".", missing) => missing,
        (path, Some(name)) => Some(format!("{path}.{name}")),
        (path, None) => Some(path.to_string()),
    };
    let detail = match &field {
        Some(field) if !message.contains(&format!("`{field}`")) => format!("{field}: {message}"),
        _ => message,
    };
    let status = match error.classify() {
        Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
        Category::Syntax | Category::Eof | Category::Io => StatusCode::BAD_REQUEST,
    };
    ApiError::Invalid {
        status,
        field,
        detail,
    }
}

/// `name` in "…{opening}name`…".
fn backticked_name_after(message: &str, opening: &str) -> Option<String> {
    let rest = message.split_once(opening)?.1;
    Some(rest.split_once('`')?.0.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through Debug only
    struct Body {
        title: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn field_and_status(body: &str) -> (Option<String>, u16) {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Invalid { status, field, .. }) => (field, status.as_u16()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let field = |name: &str| Some(name.to_string());
        // Well-formed JSON of the wrong shape: 422.
        assert_eq!(field_and_status("{}"), (field("title"), 422));
        assert_eq!(field_and_status(r#"{"title": 5}"#), (field("title"), 422));
        assert_eq!(
            field_and_status(r#"{"title": null}"#),
            (field("title"), 422)
        );
        assert_eq!(
            field_and_status(r#"{"title": "a", "colour": 1}"#),
            (field("colour"), 422)
        );
        assert_eq!(
            field_and_status(r#"{"title": "a", "nested": {"count": -1}}"#),
            (field("nested.count"), 422)
        );
        assert_eq!(
            field_and_status(r#"{"title": "a", "nested": {}}"#),
            (field("nested.count"), 422)
        );
        assert_eq!(field_and_status(r#""a title""#), (None, 422));
        // Not JSON: 400, with the field when parsing stopped inside one.
        assert_eq!(field_and_status(r#"{"title": }"#), (field("title"), 400));
        assert_eq!(field_and_status(r#"{"title": "a"} x"#), (None, 400));
        assert_eq!(field_and_status(""), (None, 400));
        assert_eq!(field_and_status(r#"{"title": "a",}"#), (None, 400));
        assert_eq!(
            field_and_status(r#"{"title": "a", "nested": {"count": 1,}}"#),
            (field("nested"), 400)
        );
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        // Issue 10, finding 6: a NUL in an event title was stored on SQLite and a server
        // error on PostgreSQL.
        assert_eq!(
            field_and_status(r#"{"title": "Cup\u0000final"}"#),
            (Some("title".to_string()), 422)
        );
        assert_eq!(
            field_and_status(r#"{"title": "a", "nested": {"tags": ["x", "\u0000"]}}"#),
            (Some("nested.tags[1]".to_string()), 422)
        );
        // A whole number written with a fraction is that integer (JSON Schema's view).
        assert!(parse::<Body>(br#"{"title": "a", "nested": {"count": 3.0}}"#).is_ok());
        assert_eq!(
            field_and_status(r#"{"title": "a", "nested": {"count": 3.5}}"#),
            (Some("nested.count".to_string()), 422)
        );
        // An escaped backslash before "u0000" is no NUL.
        assert!(parse::<Body>(br#"{"title": "C:\\u0000"}"#).is_ok());
    }

    #[test]
    fn json_content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
