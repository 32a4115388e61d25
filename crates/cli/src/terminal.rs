//! Text on the user's terminal. The client commands talk to servers they do not trust
//! (`fugue certs show`, `fugue federation login`), and whatever a server says (a problem
//! detail, a close reason, a service name, an event) must not drive the terminal: no ANSI or
//! OSC escape sequences (colours, cursor moves, window titles, hyperlinks, clipboard writes),
//! no C0/C1 controls, no bidirectional overrides that reorder what is shown.
//!
//! Every line the client commands print goes through [`printable`] ([`out!`] and [`note!`]);
//! so does the error line of `main`.

use std::borrow::Cow;

/// `text` with every terminal control written as `\uXXXX`. Tab stays; a newline is escaped
/// too, so server text cannot fake further lines of output. The escapes are also JSON's own,
/// so a JSON line stays valid JSON with the same meaning.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_terminal_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls and DEL (tab excepted), Unicode line and paragraph separators, and the
/// bidirectional marks, embeddings, overrides and isolates (the "Trojan Source" characters).
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `println!` for lines that may carry server text.
macro_rules! out {
    ($($arg:tt)*) => {
        println!("{}", $crate::terminal::printable(&format!($($arg)*)))
    };
}

/// `eprintln!` for notices that may carry server text.
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::terminal::printable(&format!($($arg)*)))
    };
}

pub(crate) use {note, out};

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn plain_text_passes_unchanged() {
        let text = "alice@example.com\tsession laptop → 2026-01-01 (valid) «ok» 日本";
        assert!(matches!(printable(text), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable(text), text);
    }

    #[test]
    fn escape_sequences_and_controls_are_escaped() {
        // CSI colour, OSC window title ended by BEL and by ST, a C1 CSI, DEL, NUL, CR, LF.
        let hostile = "\u{1b}[31mred\u{1b}[0m \u{1b}]0;pwned\u{7} \u{1b}]8;;http://x\u{1b}\\ \u{9b}2J \u{7f}\u{0}\r\nfake";
        let shown = printable(hostile);
        assert_eq!(
            shown,
            "\\u001b[31mred\\u001b[0m \\u001b]0;pwned\\u0007 \\u001b]8;;http://x\\u001b\\ \\u009b2J \\u007f\\u0000\\u000d\\u000afake"
        );
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn bidirectional_overrides_and_separators_are_escaped() {
        let shown = printable("a\u{202e}cba\u{202c} \u{2066}x\u{2069} \u{200f}\u{61c}\u{2028}");
        assert_eq!(
            shown,
            "a\\u202ecba\\u202c \\u2066x\\u2069 \\u200f\\u061c\\u2028"
        );
    }

    #[test]
    fn an_escaped_json_line_is_still_the_same_json() {
        let value = serde_json::json!({"n": "core\u{1b}[2J\u{85}\u{202e}", "d": {"x": "\u{7}"}});
        let line = serde_json::to_string(&value).unwrap();
        let shown = printable(&line);
        assert!(!shown.chars().any(char::is_control));
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }
}
