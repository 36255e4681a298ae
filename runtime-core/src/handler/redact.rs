//! [`Redact`]: masks secrets before anything reaches the store.

use std::sync::{Arc, Mutex, PoisonError};

use aho_corasick::{AhoCorasick, MatchKind};

use super::{ExecutionError, ExecutionHandler, Outcome};
use crate::context::{ExecutionContext, OutputLayer};
use crate::schema::StreamName;

/// What replaces a secret.
const MASK: &str = "[redacted]";

/// The most stream text held back because it could still be the start of a secret; a
/// longer run is let through (and masked if it already is one).
pub const MAX_HELD: usize = 4096;

/// Finds secrets in text: configured literals and, unless turned off, common token shapes:
///
/// - OpenAI/Anthropic `sk-…`; Stripe `sk_live_…`, `sk_test_…`, `rk_live_…`, `rk_test_…`;
/// - GitHub `ghp_…`, `gho_…`, `ghu_…`, `ghs_…`, `ghr_…`, `github_pat_…`; GitLab `glpat-…`;
/// - Slack `xoxb-…`, `xoxp-…`, `xoxa-…`, `xoxr-…`, `xoxs-…`, `xapp-…`;
/// - AWS access keys `AKIA…` and temporary ones `ASIA…`; Google `AIza…`;
/// - Hugging Face `hf_…`; npm `npm_…`;
/// - JWTs (`eyJ…`), the token after `Bearer ` or `bearer `;
/// - the password in a URL (`scheme://user:password@host`).
///
/// Its `Debug` output names how many literals it holds, never the literals.
///
/// ```
/// use runtime_core::handler::Redactor;
///
/// let redactor = Redactor::new().literal("hunter2");
/// assert_eq!(redactor.redact("pw=hunter2"), "pw=[redacted]");
/// assert_eq!(
///     redactor.redact("key sk-abcdefghijklmnopqrstuvwx1234 ok"),
///     "key [redacted] ok"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    literals: Vec<String>,
    /// Finds every literal in one pass, leftmost-longest.
    matcher: Option<AhoCorasick>,
    no_token_shapes: bool,
}

/// A token shape: a prefix, then at least `min` characters of its alphabet.
struct Shape {
    prefix: &'static str,
    min: usize,
    alphabet: fn(char) -> bool,
    /// Keep the prefix visible (`Bearer `) and mask only what follows.
    keep_prefix: bool,
}

fn word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn upper_digit(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

fn jwt(c: char) -> bool {
    word(c) || c == '.'
}

fn bearer(c: char) -> bool {
    word(c) || matches!(c, '.' | '~' | '+' | '/' | '=')
}

const SHAPES: &[Shape] = &[
    Shape {
        prefix: "sk-",
        min: 20,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "github_pat_",
        min: 20,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "ghp_",
        min: 20,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "gho_",
        min: 20,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "ghu_",
        min: 20,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "ghs_",
        min: 20,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "ghr_",
        min: 20,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "glpat-",
        min: 20,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xoxb-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xoxp-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xoxa-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xoxr-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xoxs-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "xapp-",
        min: 10,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "sk_live_",
        min: 16,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "sk_test_",
        min: 16,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "rk_live_",
        min: 16,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "rk_test_",
        min: 16,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "hf_",
        min: 30,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "npm_",
        min: 30,
        alphabet: alnum,
        keep_prefix: false,
    },
    Shape {
        prefix: "AKIA",
        min: 16,
        alphabet: upper_digit,
        keep_prefix: false,
    },
    Shape {
        prefix: "ASIA",
        min: 16,
        alphabet: upper_digit,
        keep_prefix: false,
    },
    Shape {
        prefix: "AIza",
        min: 30,
        alphabet: word,
        keep_prefix: false,
    },
    Shape {
        prefix: "eyJ",
        min: 20,
        alphabet: jwt,
        keep_prefix: false,
    },
    Shape {
        prefix: "Bearer ",
        min: 16,
        alphabet: bearer,
        keep_prefix: true,
    },
    Shape {
        prefix: "bearer ",
        min: 16,
        alphabet: bearer,
        keep_prefix: true,
    },
];

impl Redactor {
    /// A redactor for common token shapes and no literals yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also masks `secret` wherever it appears. Empty strings are ignored.
    pub fn literal(mut self, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        if !secret.is_empty() && !self.literals.contains(&secret) {
            self.literals.push(secret);
            // Leftmost-longest: a secret containing another is masked whole.
            self.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&self.literals)
                .ok();
        }
        self
    }

    /// Whether to mask common token shapes (on by default).
    pub fn token_shapes(mut self, on: bool) -> Self {
        self.no_token_shapes = !on;
        self
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.redact_in_place(&mut text);
        text
    }

    /// Masks secrets in `text`, allocating only when it finds one.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Some(matcher) = &self.matcher
            && matcher.is_match(text.as_str())
        {
            let mut masked = String::with_capacity(text.len());
            matcher.replace_all_with(text, &mut masked, |_, _, out| {
                out.push_str(MASK);
                true
            });
            *text = masked;
        }
        if !self.no_token_shapes {
            if let Some(masked) = mask_shapes(text) {
                *text = masked;
            }
            if let Some(masked) = mask_url_passwords(text) {
                *text = masked;
            }
        }
    }
}

impl Redactor {
    /// Where the end of `text` that could still grow into a secret begins (`text.len()`
    /// if none could): a proper prefix of a literal, a token shape's prefix or a token
    /// still running at the end, a `Bearer ` and what follows it, a URL whose user info
    /// is not finished. At most [`MAX_HELD`] bytes are held.
    fn hold_from(&self, text: &str) -> usize {
        let mut from = text.len();
        for literal in &self.literals {
            let longest = (literal.len() - 1).min(text.len());
            if let Some(k) = (1..=longest).rev().find(|&k| {
                text.is_char_boundary(text.len() - k)
                    && literal
                        .as_bytes()
                        .starts_with(&text.as_bytes()[text.len() - k..])
            }) {
                from = from.min(text.len() - k);
            }
        }
        if !self.no_token_shapes {
            from = from.min(shape_tail(text)).min(url_tail(text));
        }
        if text.len() - from > MAX_HELD {
            text.len()
        } else {
            from
        }
    }
}

/// The start of a token shape that is still running at the end of `text`, or of a
/// prefix of one.
fn shape_tail(text: &str) -> usize {
    // Every shape's prefix and body are word characters or `bearer` characters, but for
    // the space in `Bearer `: the candidates lie in the trailing run, or just before it.
    let window_start = floor_boundary(text, text.len().saturating_sub(MAX_HELD + 16));
    let run_start = text[window_start..]
        .char_indices()
        .rev()
        .find(|(_, c)| !bearer(*c) && *c != ' ')
        .map_or(window_start, |(at, c)| window_start + at + c.len_utf8());
    let mut at = run_start;
    while at < text.len() {
        let boundary = text[..at].chars().next_back().is_none_or(|c| !word(c));
        let rest = &text[at..];
        if boundary
            && SHAPES.iter().any(|shape| {
                shape.prefix.starts_with(rest)
                    || rest
                        .strip_prefix(shape.prefix)
                        .is_some_and(|body| body.chars().all(shape.alphabet))
            })
        {
            return at;
        }
        at += rest.chars().next().map_or(1, char::len_utf8);
    }
    text.len()
}

/// The start of the last word when it is a URL whose user info may not be complete yet
/// (`…://user:pa`), or ends in what could begin `://`.
fn url_tail(text: &str) -> usize {
    let word_start = text.rfind(char::is_whitespace).map_or(0, |at| {
        at + text[at..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &text[word_start..];
    let open = match word.rfind("://") {
        Some(at) => !word[at + 3..].contains(['/', '?', '#']),
        None => word.ends_with(':') || word.ends_with(":/"),
    };
    if open { word_start } else { text.len() }
}

/// The largest char boundary at or before `at`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` with the password of every `scheme://user:password@host` masked, or `None` if it
/// has none.
fn mask_url_passwords(text: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        from = start;
        // The user info ends at `@`, before any `/`, `?`, `#` or white space.
        let authority = &text[start..];
        let end = authority
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(authority.len());
        let Some(at) = authority[..end].rfind('@') else {
            continue;
        };
        let Some(colon) = authority[..at].find(':') else {
            continue;
        };
        if colon + 1 == at {
            continue; // `user:@host`: nothing to hide
        }
        let masked = out.get_or_insert_with(String::new);
        masked.push_str(&text[copied..start + colon + 1]);
        masked.push_str(MASK);
        copied = start + at;
        from = copied;
    }
    let mut masked = out?;
    masked.push_str(&text[copied..]);
    Some(masked)
}

/// Every token shape's prefix, found leftmost first in one pass over the text (`None` if
/// the automaton could not be built, which a handful of short literals never makes it).
static SHAPE_PREFIXES: std::sync::LazyLock<Option<AhoCorasick>> = std::sync::LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(SHAPES.iter().map(|shape| shape.prefix))
        .ok()
});

/// The first place at or after `from` where a token shape's prefix begins: only there can
/// a token start. Without the automaton, every place is a candidate.
fn next_shape_prefix(text: &str, from: usize) -> Option<usize> {
    match &*SHAPE_PREFIXES {
        Some(prefixes) if from < text.len() => prefixes
            .find(aho_corasick::Input::new(text).range(from..))
            .map(|found| found.start()),
        Some(_) => None,
        None => every_place(text, from),
    }
}

/// `from` itself, while in the text: every place is a candidate.
fn every_place(text: &str, from: usize) -> Option<usize> {
    (from < text.len()).then_some(from)
}

/// `text` with token shapes masked, or `None` if it has none.
fn mask_shapes(text: &str) -> Option<String> {
    mask_shapes_at(text, next_shape_prefix)
}

/// [`mask_shapes`], trying the places `next` gives (the next candidate at or after a place).
fn mask_shapes_at(text: &str, next: fn(&str, usize) -> Option<usize>) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(start) = next(text, at) {
        at = start;
        let rest = &text[at..];
        let boundary = text[..at].chars().next_back().is_none_or(|c| !word(c));
        let found = boundary
            .then(|| {
                SHAPES.iter().find_map(|shape| {
                    let body = rest.strip_prefix(shape.prefix)?;
                    let len: usize = body
                        .chars()
                        .take_while(|c| (shape.alphabet)(*c))
                        .map(char::len_utf8)
                        .sum();
                    (body[..len].chars().count() >= shape.min).then_some((shape, len))
                })
            })
            .flatten();
        match found {
            Some((shape, len)) => {
                let masked = out.get_or_insert_with(String::new);
                masked.push_str(&text[copied..at]);
                if shape.keep_prefix {
                    masked.push_str(shape.prefix);
                }
                masked.push_str(MASK);
                at += shape.prefix.len() + len;
                copied = at;
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    let mut masked = out?;
    masked.push_str(&text[copied..]);
    Some(masked)
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("literals", &self.literals.len())
            .field("token_shapes", &!self.no_token_shapes)
            .finish()
    }
}

/// One execution's redaction: the redactor, and per stream the text held back because it
/// could still be the start of a secret.
struct StreamRedaction {
    redactor: Arc<Redactor>,
    held: Mutex<[String; 2]>,
}

fn slot(stream: StreamName) -> usize {
    match stream {
        StreamName::Stdout => 0,
        StreamName::Stderr => 1,
    }
}

impl OutputLayer for StreamRedaction {
    fn rewrite(&self, text: &mut String) {
        self.redactor.redact_in_place(text);
    }

    fn rewrite_stream(&self, stream: StreamName, text: &mut String) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let held = &mut held[slot(stream)];
        held.push_str(text);
        let from = self.redactor.hold_from(held);
        *text = held.split_off(from);
        std::mem::swap(text, held);
        self.redactor.redact_in_place(text);
    }

    fn release(&self, stream: StreamName) -> Option<String> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = std::mem::take(&mut held[slot(stream)]);
        if text.is_empty() {
            return None;
        }
        self.redactor.redact_in_place(&mut text);
        Some(text)
    }
}

/// Masks secrets (see [`Redactor`]) in everything the inner handler writes, in the result
/// it returns and in the error it fails with, before any of it reaches the store.
///
/// Stream text is redacted as a stream: the end of a write that could still be the start
/// of a secret (up to [`MAX_HELD`] bytes) is held back until a later write to the same
/// stream completes or rules it out, an output other than stream text is written, or the
/// handler returns, so a token split across writes (or cut by a pipe's line limit) is
/// masked whole. Held text is lost, not
/// shown, if the handler is dropped. Other outputs are redacted whole, every string of
/// them: display data and metadata, JSON keys, MIME types, display ids, annotations.
///
/// ```
/// use runtime_core::{ManualClock, handler::{Echo, Redact, Redactor}};
///
/// let handler = Redact::new(Echo::new(ManualClock::default()), Redactor::new().literal("hunter2"));
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(handler);
/// ```
pub struct Redact<H> {
    inner: H,
    redactor: Arc<Redactor>,
}

impl<H> Redact<H> {
    /// `inner`, with its outputs passed through `redactor`.
    pub fn new(inner: H, redactor: Redactor) -> Self {
        Redact {
            inner,
            redactor: Arc::new(redactor),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<H: ExecutionHandler> ExecutionHandler for Redact<H> {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        let redactor = &*self.redactor;
        let layered = ctx.with_layer(Arc::new(StreamRedaction {
            redactor: self.redactor.clone(),
            held: Mutex::default(),
        }));
        let returned = self.inner.execute(layered.clone()).await;
        layered.release_held();
        match returned {
            Ok(mut outcome) => {
                outcome.result = outcome.result.map(|result| {
                    crate::context::rewrite_bundle(result, &|text| redactor.redact_in_place(text))
                });
                Ok(outcome)
            }
            Err(ExecutionError::Failed {
                ename,
                evalue,
                traceback,
            }) => Err(ExecutionError::Failed {
                ename: redactor.redact(&ename),
                evalue: redactor.redact(&evalue),
                traceback: traceback.iter().map(|line| redactor.redact(line)).collect(),
            }),
            Err(ExecutionError::Unavailable(why)) => {
                Err(ExecutionError::Unavailable(redactor.redact(&why)))
            }
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn looking_only_where_a_prefix_begins_masks_what_trying_every_place_masks() {
        let pieces = [
            "sk-",
            "sk_live_",
            "ghp_",
            "github_pat_",
            "xoxb-",
            "AKIA",
            "eyJ",
            "Bearer ",
            "bearer ",
            "hf_",
            "a",
            "Z",
            "0",
            "9",
            "_",
            "-",
            ".",
            " ",
            "\n",
            "é",
            "日",
            "x",
            "abcdefghij",
            "ABCDEFGHIJKLMNOP",
            "klmnopqrstuvwx12",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..5_000 {
            let text: String = (0..next(24)).map(|_| pieces[next(pieces.len())]).collect();
            assert_eq!(
                mask_shapes(&text),
                mask_shapes_at(&text, every_place),
                "{text:?}"
            );
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn well_known_token_shapes_and_url_passwords_are_masked() {
        let redactor = Redactor::new();
        let cases = [
            (
                "auth: bearer abcdefghijklmnop1234",
                "auth: bearer [redacted]",
            ),
            ("AWS ASIAABCDEFGHIJKLMNOP here", "AWS [redacted] here"),
            ("stripe sk_live_abcdefghijklmnop1234", "stripe [redacted]"),
            ("stripe rk_test_abcdefghijklmnop1234", "stripe [redacted]"),
            ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf [redacted]"),
            (
                "npm npm_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
                "npm [redacted]",
            ),
            ("slack xapp-1-A0123456789-abcdef", "slack [redacted]"),
            (
                "db postgres://app:s3cr3t@db.example:5432/x and https://u:p%40ss@h/",
                "db postgres://app:[redacted]@db.example:5432/x and https://u:[redacted]@h/",
            ),
            ("https://example.test/a:b@c", "https://example.test/a:b@c"),
            ("ssh://git@host/repo", "ssh://git@host/repo"),
            (
                "task-1234567890abcdefghij ok",
                "task-1234567890abcdefghij ok",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redactor.redact(text), expected, "{text}");
        }
    }
}
