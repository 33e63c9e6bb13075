//! Unified diffs of kept file content (file-content entities).
use std::path::Path;

use similar::TextDiff;

use crate::path_text::display_path;

/// Diffs longer than this are cut, with a note: a record must stay a record.
const MAX_DIFF_BYTES: usize = 64 * 1024;

/// A unified diff between two versions of a file's content. Binary content (not UTF-8 or
/// containing NUL) is summarised instead of diffed.
pub fn unified(path: &Path, old: &[u8], new: &[u8]) -> String {
    let name = display_path(path);
    let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return format!("Binary content of {name} differs\n");
    };
    if old_text.contains('\0') || new_text.contains('\0') {
        return format!("Binary content of {name} differs\n");
    }
    let diff = TextDiff::from_lines(old_text, new_text);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{name}"), &format!("b{name}"))
        .to_string();
    if text.len() > MAX_DIFF_BYTES {
        let mut cut = MAX_DIFF_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[diff truncated]\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines() {
        let diff = unified(Path::new("/etc/x.conf"), b"a\nb\nc\n", b"a\nB\nc\n");
        assert_eq!(
            diff,
            "--- a/etc/x.conf\n+++ b/etc/x.conf\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }

    #[test]
    fn binary_is_summarised() {
        assert_eq!(
            unified(Path::new("/b"), b"\x00\x01", b"\x00\x02"),
            "Binary content of /b differs\n"
        );
    }
}
