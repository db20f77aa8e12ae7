//! Request paths as rules see them, and the `path` pattern grammar.
//!
//! Rules match a normalized path so that a request cannot slip past a deny rule, or into an
//! allowed prefix, by spelling the same resource differently: percent-encoded unreserved
//! characters are decoded (`/%61dmin` is `/admin`, RFC 3986 section 6.2.2.2) and dot segments
//! are resolved (`/api/../admin` is `/admin`, section 5.2.4). Other escapes stay encoded, so
//! `%2F` is not a separator. The request itself is forwarded unchanged.

/// Returns the path of a request target for matching: the part before `?` or `#`,
/// normalized. An absolute-form target (`http://host/path`) gives its path.
pub fn normalize_target(target: &str) -> String {
    let path = match target.find("://") {
        Some(scheme_end) => {
            let rest = &target[scheme_end + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    normalize(path)
}

/// Normalizes a path: decodes escaped unreserved characters, uppercases the hex digits of
/// the other escapes, and resolves `.` and `..` segments.
pub fn normalize(path: &str) -> String {
    remove_dot_segments(&decode_unreserved(path))
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit();
        if escaped {
            let hex = &path[i + 1..i + 3];
            let value = u8::from_str_radix(hex, 16).expect("two hex digits");
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        // Multi-byte characters are copied whole.
        let ch = path[i..]
            .chars()
            .next()
            .expect("index is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').peekable();
    // A leading "/" yields an empty first part, which stays as the root.
    let absolute = path.starts_with('/');
    if absolute {
        parts.next();
    }
    let mut trailing_slash = false;
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        match part {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            _ => {
                segments.push(part);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Matches a normalized path against a rule's pattern. In a pattern, `*` as a whole segment
/// matches exactly one non-empty segment; as the last segment it matches one or more
/// segments, the first of them non-empty. Anything else matches itself exactly.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern = normalize(pattern);
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();

    for (index, want) in pattern.iter().enumerate() {
        let last = index + 1 == pattern.len();
        let Some(have) = path.get(index) else {
            return false;
        };
        match *want {
            "*" if last => return !have.is_empty(),
            "*" if have.is_empty() => return false,
            "*" => {}
            literal if literal != *have => return false,
            _ => {}
        }
    }
    pattern.len() == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/../a", "/a"),
            ("/%61dmin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%2e%2e/admin", "/admin"),
            ("/api/%2E%2E/admin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/", "/"),
            ("/a/", "/a/"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            ("/bad%zz", "/bad%zz"),
            ("/end%2", "/end%2"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "normalize({input:?})");
        }
    }

    #[test]
    fn target_forms() {
        assert_eq!(normalize_target("/a/b?x=/c"), "/a/b");
        assert_eq!(normalize_target("/a#frag"), "/a");
        assert_eq!(normalize_target("http://web.test:8080/x/y?z"), "/x/y");
        assert_eq!(normalize_target("http://web.test"), "/");
        assert_eq!(normalize_target("*"), "*");
    }

    #[test]
    fn pattern_table() {
        let cases = [
            ("/v1/users", "/v1/users", true),
            ("/v1/users", "/v1/users/", false),
            ("/v1/users", "/v1/Users", false),
            ("/api/*", "/api/x", true),
            ("/api/*", "/api/x/y/z", true),
            ("/api/*", "/api/", false),
            ("/api/*", "/api", false),
            ("/api/*", "/apix/y", false),
            ("/repos/*/issues", "/repos/a/issues", true),
            ("/repos/*/issues", "/repos//issues", false),
            ("/repos/*/issues", "/repos/a/b/issues", false),
            ("/repos/*/issues", "/repos/a/issues/1", false),
            ("/api/*", &normalize("/api/../admin"), false),
            ("/admin", &normalize("/%61dmin"), true),
            ("/a%2Fb", &normalize("/a%2fb"), true),
            ("/a/b", &normalize("/a%2Fb"), false),
            ("/*", "/anything/at/all", true),
            ("/", "/", true),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                matches(pattern, path),
                expected,
                "matches({pattern:?}, {path:?})"
            );
        }
    }
}
