//! Field rules the API's domains share, each beside the schema that documents it, so that
//! the OpenAPI document says exactly what the handlers accept: a value the schema allows
//! is accepted, one it refuses is refused (issue 10: generated clients must work).
//!
//! Values are checked as sent, not trimmed first: a pattern cannot say "after trimming".

use utoipa::ToSchema;

use super::problem::ApiError;

/// A display text (title, name): not only whitespace, at most `max_chars` characters
/// as sent; stored trimmed. Its schemas say so with the pattern
/// `[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]`:
/// at least one character that is not whitespace as `char::is_whitespace` sees it
/// (Unicode White_Space: ECMA-262's `\s` without U+FEFF, plus U+0085).
pub(crate) fn display_text<'a>(
    field: &str,
    raw: &'a str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not be empty or only spaces"),
        ));
    }
    let chars = raw.chars().count();
    if chars > max_chars {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is {chars} characters long; the limit is {max_chars}"),
        ));
    }
    Ok(text)
}

/// A category or tag, stored lowercased: 1 to 64 characters of letters, digits, '_' and
/// '-', starting with a letter or digit.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
pub(crate) struct Label(#[allow(dead_code, reason = "a schema only")] String);

/// [`Label`]'s rule; the label lowercased.
pub(crate) fn label(field: &str, raw: &str) -> Result<String, ApiError> {
    let valid = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!(
                "{field} must be 1 to 64 characters of letters, digits, '_' and '-', starting \
                 with a letter or digit"
            ),
        ))
    }
}

/// An ISO 3166-1 alpha-2 country code, e.g. `US` (any case).
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z]{2}$")]
pub(crate) struct CountryCode(#[allow(dead_code, reason = "a schema only")] String);

/// [`CountryCode`]'s rule; the code uppercased.
pub(crate) fn country_code(field: &str, raw: &str) -> Result<String, ApiError> {
    if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(raw.to_ascii_uppercase())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{field} must be an ISO 3166-1 alpha-2 country code such as US"),
        ))
    }
}

/// At most 254 characters (RFC 5321 §4.5.3.1.3).
const EMAIL_MAX_CHARS: usize = 254;

/// An email address as accounts take it, lowercased: a local part of common characters
/// (`[A-Za-z0-9._%+-]`), `@`, and a domain of at least two labels of `[A-Za-z0-9-]`.
/// The schema: `^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`, at most 254.
pub(crate) fn email(raw: &str) -> Result<String, ApiError> {
    let local_char =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let label_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let valid = raw.len() <= EMAIL_MAX_CHARS
        && raw.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.bytes().all(local_char)
                && domain.contains('.')
                && domain
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(label_char))
        });
    if valid {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_field(
            "email",
            "email must be an address like viewer@example.com",
        ))
    }
}

/// A principal is an identifier other keys and events refer to: 1 to 64 characters of
/// `[0-9A-Za-z._@-]`.
pub(crate) fn principal(field: &str, text: &str) -> Result<String, ApiError> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if valid {
        Ok(text.to_string())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{field} must be 1 to 64 characters of letters, digits, '.', '_', '@', '-'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_sent() {
        assert_eq!(label("tag", "Cup-2026").unwrap(), "cup-2026");
        assert!(label("tag", " cup").is_err());
        assert!(label("tag", "-cup").is_err());
        assert_eq!(country_code("geo", "us").unwrap(), "US");
        assert!(country_code("geo", " US").is_err());
        assert_eq!(email("Viewer@Example.com").unwrap(), "viewer@example.com");
        for bad in [
            "0@0.0*", "a@b", "a@@b.c", "a@.b.c", "a@b.c.", " a@b.c", "a b@c.d",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert_eq!(display_text("title", "  Cup  ", 200).unwrap(), "Cup");
        assert!(display_text("title", "\u{85}\u{3000}", 200).is_err());
        assert!(display_text("title", "\u{feff}", 200).is_ok());
        assert!(display_text("title", &format!(" {}", "x".repeat(200)), 200).is_err());
    }
}
