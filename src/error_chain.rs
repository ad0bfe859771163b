//! One way to print an error with its causes, for the log and for a terminal.

/// An error and its causes on one line: reqwest's top-level message alone ("error sending
/// request") hides whether DNS, TCP or TLS failed. A cause whose text its parent already
/// repeats (hyper and tonic do at times) is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_on_one_line() {
        let err = Outer(std::io::Error::other("refused"));
        assert_eq!(error_chain(&err), "outer: refused");
    }
}
