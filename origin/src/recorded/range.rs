//! HTTP Range requests (RFC 9110 §14) on media objects: I-frame playlists address each
//! segment's first sync sample as a byte range, and players seek in large VOD segments.
//! One range per request; a multi-range request gets the whole object (§14.2 allows it).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::ApiError;

/// The response for `bytes` under the request's `Range` header: 206 with the slice, 200
/// with all of it when there is no usable single range, 416 when the range starts past
/// the end. `headers` (content type, caching) go on either answer.
pub(crate) fn ranged(
    request: &HeaderMap,
    bytes: Bytes,
    mut headers: Vec<(header::HeaderName, HeaderValue)>,
) -> Result<Response, ApiError> {
    headers.push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
    let length = bytes.len() as u64;
    let Some(spec) = request
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(whole(headers, bytes));
    };
    match parse(spec, length) {
        Parsed::Whole => Ok(whole(headers, bytes)),
        Parsed::Unsatisfiable => Err(ApiError::RangeNotSatisfiable {
            length,
            detail: format!("Range {spec:?} starts past the object's {length} bytes"),
        }),
        Parsed::Slice(first, last) => {
            let content_range = format!("bytes {first}-{last}/{length}");
            headers.push((
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).expect("digits and '-', '/'"),
            ));
            let slice = bytes.slice(first as usize..=last as usize);
            let mut response = (StatusCode::PARTIAL_CONTENT, slice).into_response();
            set(&mut response, headers);
            Ok(response)
        }
    }
}

fn whole(headers: Vec<(header::HeaderName, HeaderValue)>, bytes: Bytes) -> Response {
    let mut response = bytes.into_response();
    set(&mut response, headers);
    response
}

/// Sets each header, replacing what the body's `IntoResponse` put there (a `Bytes` body
/// says `application/octet-stream`; `HeaderMap::extend` would add a second one).
fn set(response: &mut Response, headers: Vec<(header::HeaderName, HeaderValue)>) {
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// No single byte range this server understands: answer the whole object.
    Whole,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Slice(u64, u64),
}

/// `bytes=first-last`, `bytes=first-` or `bytes=-suffix` (RFC 9110 §14.1.2).
fn parse(spec: &str, length: u64) -> Parsed {
    let Some(range) = spec.trim().strip_prefix("bytes=") else {
        return Parsed::Whole;
    };
    if range.contains(',') {
        return Parsed::Whole;
    }
    let Some((first, last)) = range.trim().split_once('-') else {
        return Parsed::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // A suffix: the last `n` bytes.
        (true, _, Some(n)) => {
            if n == 0 || length == 0 {
                Parsed::Unsatisfiable
            } else {
                Parsed::Slice(length.saturating_sub(n), length - 1)
            }
        }
        (false, Some(first), last) if last.is_some() || last_is_open(range) => {
            if first >= length {
                return Parsed::Unsatisfiable;
            }
            match last {
                Some(last) if last < first => Parsed::Whole,
                Some(last) => Parsed::Slice(first, last.min(length - 1)),
                None => Parsed::Slice(first, length - 1),
            }
        }
        _ => Parsed::Whole,
    }
}

fn last_is_open(range: &str) -> bool {
    range.trim().ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse("bytes=0-99", 1000), Parsed::Slice(0, 99));
        assert_eq!(parse("bytes=900-", 1000), Parsed::Slice(900, 999));
        assert_eq!(parse("bytes=-100", 1000), Parsed::Slice(900, 999));
        assert_eq!(parse("bytes=-5000", 1000), Parsed::Slice(0, 999));
        assert_eq!(parse("bytes=990-2000", 1000), Parsed::Slice(990, 999));
        assert_eq!(parse("bytes=1000-", 1000), Parsed::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Parsed::Unsatisfiable);
        assert_eq!(parse("bytes=5-1", 1000), Parsed::Whole);
        assert_eq!(parse("bytes=0-1,5-6", 1000), Parsed::Whole);
        assert_eq!(parse("items=0-1", 1000), Parsed::Whole);
        assert_eq!(parse("bytes=a-b", 1000), Parsed::Whole);
    }

    #[test]
    fn a_range_answers_206_with_content_range() {
        let mut request = HeaderMap::new();
        request.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        let video = || vec![(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"))];
        let response = ranged(
            &HeaderMap::new(),
            Bytes::from_static(b"0123456789"),
            video(),
        )
        .unwrap();
        let types: Vec<_> = response
            .headers()
            .get_all(header::CONTENT_TYPE)
            .iter()
            .collect();
        assert_eq!(types, ["video/mp4"], "one content type, the media's");
        let response = ranged(&request, Bytes::from_static(b"0123456789"), video()).unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let types: Vec<_> = response
            .headers()
            .get_all(header::CONTENT_TYPE)
            .iter()
            .collect();
        assert_eq!(types, ["video/mp4"]);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(response.headers()[header::ACCEPT_RANGES], "bytes");
        request.insert(header::RANGE, HeaderValue::from_static("bytes=10-"));
        assert!(matches!(
            ranged(&request, Bytes::from_static(b"0123456789"), Vec::new()),
            Err(ApiError::RangeNotSatisfiable { length: 10, .. })
        ));
    }
}
