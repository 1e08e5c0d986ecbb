//! Text for one-line messages: errors from the driver, the transport or the API, as they
//! appear in logs, in API errors and on the CLI's stderr.

/// Longest one-line message kept, in characters; a longer one is cut and ends with `…`.
/// (A driver error may quote a whole document.)
pub const ONE_LINE_MAX_CHARS: usize = 500;

/// `text` on one line: every whitespace run (newlines included) becomes one space, and
/// the result is at most [`ONE_LINE_MAX_CHARS`] characters.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(ONE_LINE_MAX_CHARS));
    let mut chars = 0;
    for word in text.split_whitespace() {
        if chars > 0 {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars == ONE_LINE_MAX_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_runs_become_one_space() {
        assert_eq!(one_line("  a\n\tb  c\r\n"), "a b c");
        assert_eq!(
            one_line("<html>\n<body>bad gateway</body>\n</html>"),
            "<html> <body>bad gateway</body> </html>"
        );
        assert_eq!(one_line(""), "");
        assert_eq!(one_line(" \n "), "");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "é".repeat(ONE_LINE_MAX_CHARS + 10);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), ONE_LINE_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(ONE_LINE_MAX_CHARS);
        assert_eq!(one_line(&exact), exact);
    }
}
