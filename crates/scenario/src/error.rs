//! What is wrong with a scenario, and where.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_path_to_error::{Path, Segment};

/// One thing wrong with a scenario, placed as precisely as it could be.
///
/// `step` counts from 0, like the node's JSON array; [`Display`](fmt::Display) shows it counted
/// from 1 ("step 2" is `step: Some(1)`), as a person reads a list. Indexes inside `field`
/// (`buttons[1].node`) count from 0, as in a JSON path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioError {
    /// The node's name, when the error is inside a node.
    pub node: Option<String>,
    /// The step's index in its node (from 0), when the error is inside a step.
    pub step: Option<usize>,
    /// The field, as a path inside the step (`send_me.url`, `buttons[1].node`), or inside the
    /// document when there is no step (`start`).
    pub field: Option<String>,
    /// What is wrong, and the limit where one was passed.
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn new(
        node: Option<&str>,
        step: Option<usize>,
        field: Option<String>,
        message: String,
    ) -> ScenarioError {
        ScenarioError {
            node: node.map(shown),
            step,
            field,
            message,
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(node) = &self.node {
            place.push(format!("node {node:?}"));
        }
        if let Some(step) = self.step {
            place.push(format!("step {}", step + 1));
        }
        if let Some(field) = &self.field {
            place.push(format!("field {field:?}"));
        }
        if place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", place.join(", "), self.message)
        }
    }
}

/// A scenario that cannot be used, and every reason found (up to
/// [`limits::ERRORS`](crate::limits::ERRORS)). A document that does not parse has one error:
/// parsing stops at the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    /// The errors, in document order.
    pub errors: Vec<ScenarioError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid scenario: ")?;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    /// One error about the document as a whole (it is not JSON, or not YAML, at all).
    pub(crate) fn whole(message: String) -> Invalid {
        Invalid {
            errors: vec![ScenarioError::new(None, None, None, message)],
        }
    }

    /// One error found while reading the document, placed by the path serde had reached:
    /// `nodes.<node>[<step>].<field...>`.
    pub(crate) fn at_path(path: &Path, message: String) -> Invalid {
        let segments: Vec<&Segment> = path.iter().collect();
        let (node, step, rest) = match segments.as_slice() {
            [
                Segment::Map { key: nodes },
                Segment::Map { key: node },
                rest @ ..,
            ] if nodes == "nodes" => match rest {
                [Segment::Seq { index }, rest @ ..] => (Some(node.as_str()), Some(*index), rest),
                _ => (Some(node.as_str()), None, rest),
            },
            rest => (None, None, rest),
        };
        Invalid {
            errors: vec![ScenarioError::new(node, step, field_path(rest), message)],
        }
    }
}

/// `[Map a, Seq 1, Map b]` as `a[1].b`.
fn field_path(segments: &[&Segment]) -> Option<String> {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A name as an error shows it: cut to 64 characters, so that a name refused for its length
/// does not fill the error.
pub(crate) fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}
