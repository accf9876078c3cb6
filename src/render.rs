//! Email templates: handlebars in strict mode, so a variable the context does not have is
//! an error (at `registrar check`), never a blank in a sent email. HTML templates escape
//! values; text templates and subjects do not. The context is SPEC §3's: `participant`,
//! `course`, `part`, `enrolment`, `attendance`, `certificate`, `certification`, `office`.

use crate::config::Office;
use crate::lang::Lang;
use crate::rules::ActionRule;
use crate::rules::action::Texts;
use handlebars::Handlebars;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A problem in a template, with where it is (the same shape as a rule file's).
pub type TemplateProblem = crate::rules::RuleError;

/// The templates directory, parsed.
pub struct Templates {
    dir: PathBuf,
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// Certificate layouts (`NAME.svg.hbs`), values escaped for XML.
    svg: Handlebars<'static>,
    /// The fonts certificates embed; loaded when there is an SVG template.
    fonts: Option<crate::pdf::Fonts>,
    /// The rules' inline texts (subjects, names) as compiled, by their source: compiled
    /// once, not for every message.
    inline:
        std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<handlebars::Template>>>,
}

/// Inline texts kept compiled at most (the rules in force have a few per rule).
const INLINE_KEPT: usize = 4096;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: Option<String>,
}

fn registry(escape: bool) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    if !escape {
        h.register_escape_fn(handlebars::no_escape);
    }
    h.register_helper("format_date", Box::new(format_date));
    h.register_helper("format_datetime", Box::new(format_datetime));
    h.register_helper("qr", Box::new(qr));
    h
}

/// `{{qr URL x=690 y=400 size=110}}` in a certificate layout: the URL as a scannable QR
/// code (error correction M, a quiet zone of four modules on white), an SVG group whose
/// top left corner is at x, y and which is `size` units wide. An empty URL draws nothing.
fn qr(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let value = h
        .param(0)
        .ok_or(handlebars::RenderErrorReason::ParamNotFoundForIndex(
            "qr", 0,
        ))?;
    let text = value.value().as_str().unwrap_or_default();
    if text.is_empty() {
        return Ok(());
    }
    let number = |key: &str, default: f64| {
        h.hash_get(key)
            .and_then(|v| v.value().as_f64())
            .unwrap_or(default)
    };
    let (x, y, size) = (number("x", 0.0), number("y", 0.0), number("size", 100.0));
    out.write(&qr_svg(text, x, y, size).map_err(handlebars::RenderErrorReason::Other)?)?;
    Ok(())
}

/// The SVG group of [`qr`].
pub fn qr_svg(text: &str, x: f64, y: f64, size: f64) -> Result<String, String> {
    const QUIET: usize = 4;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| format!("qr: {text:?} cannot be a QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    let dark = |r: usize, c: usize| colors.get(r * width + c) == Some(&qrcode::Color::Dark);
    let mut d = String::new();
    for r in 0..width {
        let mut c = 0;
        while c < width {
            if dark(r, c) {
                let start = c;
                while c < width && dark(r, c) {
                    c += 1;
                }
                d.push_str(&format!(
                    "M{} {}h{}v1h-{}z",
                    start + QUIET,
                    r + QUIET,
                    c - start,
                    c - start
                ));
            } else {
                c += 1;
            }
        }
    }
    let total = width + 2 * QUIET;
    let scale = size / total as f64;
    Ok(format!(
        "<g transform=\"translate({x} {y}) scale({scale})\"><rect width=\"{total}\" height=\"{total}\" fill=\"#ffffff\"/><path d=\"{d}\" fill=\"#000000\"/></g>"
    ))
}

/// The language a template is being rendered in (`recipient.language`), English if none.
fn language_of(ctx: &handlebars::Context) -> Lang {
    ctx.data()["recipient"]["language"]
        .as_str()
        .and_then(Lang::parse)
        .unwrap_or_else(Lang::english)
}

/// `{{format_date X}}` (long: "23 maart 2026") and `{{format_date X "short"}}`
/// ("23-03-2026") in the recipient's language; X is a time or date of the context. An
/// empty value writes nothing (a certificate without an expiry).
fn format_date(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let (t, style) = moment_param(h, "format_date")?;
    let Some(t) = t else { return Ok(()) };
    let lang = language_of(ctx);
    let text = match style.as_deref() {
        None | Some("long") => crate::lang::long_date_of(&t, &lang),
        Some("short") => crate::lang::short_date_of(&t, &lang),
        Some(other) => {
            return Err(handlebars::RenderErrorReason::Other(format!(
                "format_date: {other:?} is not a style (use \"long\" or \"short\")"
            ))
            .into());
        }
    };
    out.write(&text)?;
    Ok(())
}

/// `{{format_datetime X}}`: the long date and the time of day, "23 maart 2026 17:00".
fn format_datetime(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let (t, _) = moment_param(h, "format_datetime")?;
    if let Some(t) = t {
        out.write(&crate::lang::long_datetime_of(&t, &language_of(ctx)))?;
    }
    Ok(())
}

/// The helper's moment (None for an empty value) and its optional style.
fn moment_param(
    h: &handlebars::Helper<'_>,
    helper: &'static str,
) -> Result<
    (
        Option<chrono::DateTime<chrono::FixedOffset>>,
        Option<String>,
    ),
    handlebars::RenderError,
> {
    let value = h
        .param(0)
        .ok_or(handlebars::RenderErrorReason::ParamNotFoundForIndex(
            helper, 0,
        ))?;
    let style = h
        .param(1)
        .and_then(|p| p.value().as_str().map(str::to_string));
    let text = value.value().as_str().unwrap_or_default();
    if text.trim().is_empty() {
        return Ok((None, style));
    }
    crate::lang::parse_moment(text)
        .map(|t| (Some(t), style))
        .ok_or_else(|| {
            handlebars::RenderErrorReason::Other(format!(
                "{helper}: {text:?} is not a time or date (give it a value such as course.start or certificate.issued_at)"
            ))
            .into()
        })
}

impl Templates {
    /// Parses every `NAME.html.hbs` and `NAME.txt.hbs` of `dir`; every problem is returned.
    pub fn load(dir: &Path) -> Result<Templates, Vec<TemplateProblem>> {
        let (t, problems) = Templates::load_all(dir);
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    /// The templates that parse, and the problems of those that do not.
    pub fn load_all(dir: &Path) -> (Templates, Vec<TemplateProblem>) {
        let mut t = Templates {
            dir: dir.to_path_buf(),
            html: registry(true),
            text: registry(false),
            svg: registry(true),
            fonts: None,
            inline: Default::default(),
        };
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                problems.push(TemplateProblem {
                    file: dir.to_path_buf(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read the templates directory: {e}"),
                });
                return (t, problems);
            }
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let (registry, stem) = if let Some(stem) = name.strip_suffix(".html.hbs") {
                (&mut t.html, stem)
            } else if let Some(stem) = name.strip_suffix(".txt.hbs") {
                (&mut t.text, stem)
            } else if let Some(stem) = name.strip_suffix(".svg.hbs") {
                (&mut t.svg, stem)
            } else {
                continue;
            };
            let source = match std::fs::read_to_string(&file) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(TemplateProblem {
                        file,
                        line: 0,
                        column: 0,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            if let Err(e) = registry.register_template_string(stem, source) {
                let (line, column) = e.pos().unwrap_or((1, 1));
                problems.push(TemplateProblem {
                    file,
                    line: line as u64,
                    column: column as u64,
                    message: e.reason().to_string(),
                });
            }
        }
        if !t.svg.get_templates().is_empty() {
            match crate::pdf::Fonts::load(dir) {
                Ok(f) => t.fonts = Some(f),
                Err(message) => problems.push(TemplateProblem {
                    file: dir.join("fonts"),
                    line: 0,
                    column: 0,
                    message,
                }),
            }
        }
        (t, problems)
    }

    /// The certificate PDF of layout `name` (`NAME.svg.hbs`) for `ctx`. Long names shrink:
    /// the layout gets `layout.name_size`, the font size at which the name fits.
    pub fn render_pdf(&self, name: &str, ctx: &Value) -> Result<Vec<u8>, TemplateProblem> {
        // The layout in the recipient's language, if there is one (`NAME.nl.svg.hbs`).
        let lang = ctx["recipient"]["language"].as_str().and_then(Lang::parse);
        let variant = lang.and_then(|l| {
            l.chain()
                .into_iter()
                .map(|l| format!("{name}.{l}"))
                .find(|v| self.svg.has_template(v))
        });
        let name = variant.as_deref().unwrap_or(name);
        let file = self.dir.join(format!("{name}.svg.hbs"));
        let problem = |line: u64, column: u64, message: String| TemplateProblem {
            file: file.clone(),
            line,
            column,
            message,
        };
        if !self.svg.has_template(name) {
            return Err(problem(
                0,
                0,
                "does not exist (a course type's certificate.template names it)".into(),
            ));
        }
        let Some(fonts) = &self.fonts else {
            return Err(problem(
                0,
                0,
                "no fonts loaded from the templates' fonts directory".into(),
            ));
        };
        let mut ctx = ctx.clone();
        let chars = ctx["participant"]["full_name"]
            .as_str()
            .map_or(0, |n| n.chars().count());
        ctx["layout"] = json!({"name_size": crate::pdf::fitted_size(chars, 44.0)});
        let svg = self.svg.render(name, &ctx).map_err(|e| {
            problem(
                e.line_no.unwrap_or(1) as u64,
                e.column_no.unwrap_or(1) as u64,
                reason(&e, &ctx),
            )
        })?;
        crate::pdf::svg_to_pdf(&svg, fonts).map_err(|m| problem(0, 0, m))
    }

    /// Whether the HTML template `name` parsed.
    pub fn has(&self, name: &str) -> bool {
        self.html.has_template(name)
    }

    /// Whether `name` has a text alternative (`NAME.txt.hbs`).
    pub fn has_text(&self, name: &str) -> bool {
        self.text.has_template(name)
    }

    /// The language a message of template `name` is written in for a recipient who reads
    /// `prefs` (best first, the office's last): the first with its own
    /// `NAME.LANG.html.hbs`; the templates without a language are in the office's.
    pub fn language_for(&self, name: &str, prefs: &[Lang], office: &Lang) -> Lang {
        for l in prefs {
            if self.html.has_template(&format!("{name}.{l}")) {
                return l.clone();
            }
            if *l == *office || *l == office.base() {
                return office.clone();
            }
        }
        office.clone()
    }

    /// The languages template `name` has its own HTML part in (`NAME.LANG.html.hbs`).
    pub fn languages_of(&self, name: &str) -> Vec<Lang> {
        variants(&self.html, name)
    }

    /// Whether certificate layout `name` (`NAME.svg.hbs`) exists.
    pub fn has_layout(&self, name: &str) -> bool {
        self.svg.has_template(name)
    }

    /// The languages certificate layout `name` has its own variant in (`NAME.LANG.svg.hbs`).
    pub fn layout_languages_of(&self, name: &str) -> Vec<Lang> {
        variants(&self.svg, name)
    }

    /// Renders the email of `rule` against `ctx`, in `ctx`'s `recipient.language` (the
    /// office's, `office`, when the template has no part of that language).
    pub fn render(
        &self,
        rule: &ActionRule,
        ctx: &Value,
        office: &Lang,
    ) -> Result<Rendered, TemplateProblem> {
        let lang = ctx["recipient"]["language"]
            .as_str()
            .and_then(Lang::parse)
            .unwrap_or_else(|| office.clone());
        // The context as handlebars holds it, made once for the four parts.
        let hctx = handlebars::Context::from(ctx.clone());
        let inline = |what: &str, s: &serde_saphyr::Spanned<Texts>| {
            let problem = |message: String| TemplateProblem {
                file: rule.file.clone(),
                line: s.referenced.line(),
                column: s.referenced.column(),
                message: format!("action {}: {what}: {message}", rule.id.value),
            };
            let text = s.value.pick(&lang, office).ok_or_else(|| {
                problem(format!(
                    "no text for {lang} (nor for the office language {office}); add `{}: ...`",
                    lang.base()
                ))
            })?;
            self.render_inline(text, &hctx)
                .map_err(|e| problem(reason(&e, ctx)))
        };
        let subject = inline("email.subject", &rule.email.subject)?;
        // A subject is one header line: a line break (from the template or a value) would
        // end it, so the message is not sent (tabs and runs of spaces are folded below).
        if let Some(c) = subject
            .trim()
            .chars()
            .find(|c| c.is_control() && *c != '\t')
        {
            return Err(TemplateProblem {
                file: rule.file.clone(),
                line: rule.email.subject.referenced.line(),
                column: rule.email.subject.referenced.column(),
                message: format!(
                    "action {}: email.subject renders {} ({:?}); a subject must be one line",
                    rule.id.value,
                    if c == '\n' || c == '\r' {
                        "a line break".to_string()
                    } else {
                        format!("the control character U+{:04X}", u32::from(c))
                    },
                    subject.trim()
                ),
            });
        }
        inline("name", &rule.name)?;
        let base = &rule.email.template.value;
        // This language's own parts, else the templates without a language.
        let own = lang
            .chain()
            .into_iter()
            .map(|l| format!("{base}.{l}"))
            .find(|v| self.html.has_template(v));
        let name = own.as_deref().unwrap_or(base);
        let file = |ext: &str| self.dir.join(format!("{name}.{ext}.hbs"));
        let located = |e: handlebars::RenderError, ext: &str| TemplateProblem {
            file: file(ext),
            line: e.line_no.unwrap_or(1) as u64,
            column: e.column_no.unwrap_or(1) as u64,
            message: format!("{} (used by action {})", reason(&e, ctx), rule.id.value),
        };
        if !self.html.has_template(name) {
            return Err(TemplateProblem {
                file: file("html"),
                line: 0,
                column: 0,
                message: format!("does not exist (used by action {})", rule.id.value),
            });
        }
        let html = self
            .html
            .render_with_context(name, &hctx)
            .map_err(|e| located(e, "html"))?;
        // The text part of the same language only: a message is in one language.
        let text = if self.text.has_template(name) {
            Some(
                self.text
                    .render_with_context(name, &hctx)
                    .map_err(|e| located(e, "txt"))?,
            )
        } else {
            None
        };
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            html,
            text,
        })
    }
}

impl Templates {
    /// An inline text (a subject, a name) rendered as a text template: compiled the first
    /// time it is seen, then kept.
    fn render_inline(
        &self,
        text: &str,
        ctx: &handlebars::Context,
    ) -> Result<String, handlebars::RenderError> {
        use handlebars::Renderable;
        let kept = self.inline.read().ok().and_then(|m| m.get(text).cloned());
        let template = match kept {
            Some(t) => t,
            None => {
                let t = std::sync::Arc::new(handlebars::Template::compile(text)?);
                if let Ok(mut m) = self.inline.write()
                    && m.len() < INLINE_KEPT
                {
                    m.insert(text.to_string(), t.clone());
                }
                t
            }
        };
        let mut out = handlebars::StringOutput::new();
        template.render(
            &self.text,
            ctx,
            &mut handlebars::RenderContext::new(None),
            &mut out,
        )?;
        out.into_string().map_err(handlebars::RenderError::from)
    }
}

fn variants(registry: &Handlebars<'static>, name: &str) -> Vec<Lang> {
    let prefix = format!("{name}.");
    let mut out: Vec<Lang> = registry
        .get_templates()
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix).and_then(Lang::parse))
        .collect();
    out.sort();
    out
}

/// The reason of a render error, worded for the person who wrote the template; an unknown
/// variable gets the nearest name the context has ("did you mean ...?").
fn reason(e: &handlebars::RenderError, ctx: &Value) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            match nearest_variable(path, ctx) {
                Some(near) => format!("unknown variable `{path}` (did you mean `{near}`?)"),
                None => format!(
                    "unknown variable `{path}` (the context has participant, course, part, enrolment, attendance, certificate, certification, office and recipient; an office digest has digest, office and recipient)"
                ),
            }
        }
        other => other.to_string(),
    }
}

/// Every variable of `ctx` as a template names it: dotted paths to each value, and the
/// keys of the objects in lists (as `{{#each}}` names them).
fn variables(ctx: &Value, prefix: &str, out: &mut Vec<String>) {
    match ctx {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(path.clone());
                variables(v, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().take(1) {
                variables(item, "", out);
            }
        }
        _ => {}
    }
}

/// The variable of `ctx` nearest to `path`, if any (see [`crate::suggest::nearest`]).
fn nearest_variable(path: &str, ctx: &Value) -> Option<String> {
    let mut names = Vec::new();
    variables(ctx, "", &mut names);
    crate::suggest::nearest(path, names.iter().map(String::as_str)).map(str::to_string)
}

/// A context with every variable filled, for `registrar check`, in `lang`.
pub fn sample_context(office: &Office, lang: &Lang) -> Value {
    let day = |s: &str| {
        crate::lang::parse_moment(s)
            .map_or_else(String::new, |t| crate::lang::long_date_of(&t, lang))
    };
    json!({
        "recipient": {"language": lang},
        "participant": {"id": "p-0001", "full_name": "Anne de Vries", "first_name": "Anne",
                        "email": "anne.devries@example.nl", "locale": "nl", "fields": {}},
        "course": {"id": "ehbo-2026-03", "name": "EHBO basiscursus", "type": "first-aid",
                   "type_name": "Eerste hulp", "status": "final",
                   "start": "2026-03-02T09:00:00+01:00", "end": "2026-03-23T12:00:00+01:00",
                   "start_date": day("2026-03-02T09:00:00+01:00"), "end_date": day("2026-03-23T12:00:00+01:00"),
                   "location": "Utrecht", "fields": {}},
        "part": {"id": "p1", "name": "Reanimatie en AED", "start": "2026-03-02T09:00:00+01:00",
                 "end": "2026-03-02T12:00:00+01:00", "date": day("2026-03-02T09:00:00+01:00")},
        "enrolment": {"result": "passed", "score": 8.5, "comment": "", "cycle": 1, "walk_in": false,
                      "completed_at": "2026-03-23T12:00:00+01:00"},
        "attendance": {"attended": 4, "required": 4, "percent": 100, "percent_needed": 75,
                       "achieved": true, "passing_obligation_passed": true, "expiry_status": "valid"},
        "certificate": {"number": "FA-2026-000123", "verification_code": "sample-code",
                        "verify_url": format!("{}/verify/sample-code", office.verify_base_url),
                        "linkedin_url": crate::credential::linkedin_url("Eerste hulp", office,
                            chrono::NaiveDate::from_ymd_opt(2026, 3, 23).unwrap_or_default(),
                            chrono::NaiveDate::from_ymd_opt(2028, 3, 23),
                            &format!("{}/verify/sample-code", office.verify_base_url), "FA-2026-000123"),
                        "issued_on": day("2026-03-23T12:00:00+01:00"), "valid_until": day("2028-03-23T12:00:00+01:00"),
                        "issued_at": "2026-03-23T12:00:00+01:00", "valid_until_at": "2028-03-23T12:00:00+01:00"},
        "certification": {"id": "forklift-operator", "name": "Forklift operator", "status": "certified",
                          "valid_until": day("2029-04-01T12:00:00+02:00"), "grace_period_ends": day("2029-06-30T12:00:00+02:00")},
        "office": {"name": office.name, "from": office.from, "verify_base_url": office.verify_base_url,
                   "locale": office.locale},
    })
}

/// The sample context of `rule`'s messages: an office digest sees `digest`, `office` and
/// `recipient` only; the others what [`sample_context`] has.
pub fn sample_context_of(rule: &crate::rules::ActionRule, office: &Office, lang: &Lang) -> Value {
    if rule.data_group != crate::rules::action::DataGroup::Office {
        return sample_context(office, lang);
    }
    let at = "2026-11-23T08:00:00+01:00";
    let day = |s: &str| {
        crate::lang::parse_moment(s)
            .map_or_else(String::new, |t| crate::lang::long_date_of(&t, lang))
    };
    json!({
        "recipient": {"language": lang},
        "office": {"name": office.name, "from": office.from, "verify_base_url": office.verify_base_url,
                   "locale": office.locale},
        "digest": {
            "since": "2026-11-16T08:00:00+01:00", "until": at,
            "since_date": day("2026-11-16T08:00:00+01:00"), "until_date": day(at),
            "failed_deliveries": [{"id": 12, "rule": "certificate-on-completion", "course": "ehbo-2026-03",
                "person": "p-0001", "name": "Anne de Vries", "address": "anne.devries@example.nl",
                "reason": "550 5.1.1 mailbox unavailable", "when": "2026-11-20T10:15:00+01:00",
                "when_date": day("2026-11-20T10:15:00+01:00")}],
            "awaiting_approval": [{"id": 7, "rule": "result-notice", "course": "ehbo-2026-03",
                "person": "p-0001", "name": "Anne de Vries"}],
            "certificates_issued": [{"number": "FA-2026-000123", "person": "p-0001", "name": "Anne de Vries",
                "course": "ehbo-2026-03", "issued_on": day("2026-11-18T12:00:00+01:00"), "revoked": false,
                "issued_at": "2026-11-18T12:00:00+01:00"}],
            "counts": {"failed_deliveries": 1, "awaiting_approval": 1, "certificates_issued": 1},
        },
    })
}

/// "2 March 2026" (English; messages use [`crate::lang::long_date`] in their language).
pub fn long_date(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    crate::lang::long_date(t, tz, &Lang::english())
}

/// The rules and templates the config names, with every problem `registrar check` would
/// report (rules, templates, and every email rendered against a sample context). The
/// daemon uses the set only when the list is empty.
pub fn load_checked(
    config: &crate::config::Config,
) -> (crate::rules::RuleSet, Templates, Vec<String>) {
    let (set, rule_errors) = crate::rules::load_all(&config.rules, &config.templates);
    let mut problems: Vec<String> = rule_errors.iter().map(ToString::to_string).collect();
    let (templates, template_errors) = Templates::load_all(&config.templates);
    problems.extend(template_errors.iter().map(ToString::to_string));
    problems.extend(
        check_rules(&templates, &set.actions, &config.office)
            .iter()
            .map(ToString::to_string),
    );
    // Every certificate layout, in every language it has, rendered and converted to PDF
    // against the sample context.
    let office = &config.office.locale;
    let mut layouts: Vec<&str> = set
        .course_types
        .values()
        .filter_map(|t| t.certificate.as_ref().map(|c| c.template.as_str()))
        .collect();
    layouts.sort_unstable();
    layouts.dedup();
    for name in layouts {
        if !templates.has_layout(name) && templates.layout_languages_of(name).is_empty() {
            // Said where the course type names it, not at a file that does not exist.
            for (id, t) in &set.course_types {
                if t.certificate.as_ref().is_some_and(|c| c.template == name) {
                    let (file, line, column) = set
                        .layout_refs
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| (config.rules.clone(), 0, 0));
                    problems.push(format!(
                        "{}:{line}:{column}: course type {id}: certificate.template {name:?}: {} does not exist",
                        file.display(),
                        config.templates.join(format!("{name}.svg.hbs")).display()
                    ));
                }
            }
            continue;
        }
        let mut langs = templates.layout_languages_of(name);
        langs.push(office.clone());
        langs.dedup();
        for lang in langs {
            if let Err(p) = templates.render_pdf(name, &sample_context(&config.office, &lang)) {
                problems.push(p.to_string());
            }
        }
    }
    (set, templates, problems)
}

/// Problems of every action's email, in every language it is written in, against the
/// sample context, for `registrar check`; and a language present for one part of an email
/// but missing for another (T7).
/// Every unknown variable of a rule's subject, name and templates in one language, not
/// only the first: each one found gets a placeholder in the sample context and the
/// rendering is tried again (at most 30 times).
fn every_problem(
    templates: &Templates,
    rule: &ActionRule,
    mut ctx: Value,
    home: &Lang,
) -> Vec<TemplateProblem> {
    let mut out: Vec<TemplateProblem> = Vec::new();
    for _ in 0..30 {
        let Err(p) = templates.render(rule, &ctx, home) else {
            break;
        };
        let missing = p
            .message
            .strip_prefix("unknown variable `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string);
        if out.contains(&p) {
            break;
        }
        out.push(p);
        match missing {
            Some(path) if fill(&mut ctx, &path) => {}
            _ => break,
        }
    }
    out
}

/// Puts a placeholder at a dotted `path` of `ctx`, making the objects on the way.
fn fill(ctx: &mut Value, path: &str) -> bool {
    let mut parts = path.split('.').peekable();
    let mut at = ctx;
    while let Some(part) = parts.next() {
        let Value::Object(map) = at else {
            return false;
        };
        if parts.peek().is_none() {
            map.insert(part.to_string(), Value::String("...".into()));
            return true;
        }
        at = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    false
}

pub fn check_rules(
    templates: &Templates,
    rules: &[ActionRule],
    office: &Office,
) -> Vec<TemplateProblem> {
    let home = &office.locale;
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| {
        r.email
            .attach
            .contains(&crate::rules::action::Attachment::Credential)
    }) {
        if office.signer.is_none() {
            out.push(TemplateProblem {
                file: r.file.clone(),
                line: r.id.referenced.line(),
                column: r.id.referenced.column(),
                message: format!(
                    "action {}: attach: [credential] needs office.signing_key_file in the configuration (write a key with `registrar keygen PATH`)",
                    r.id.value
                ),
            });
        }
    }
    // A missing or unparsable template is reported already.
    for r in rules
        .iter()
        .filter(|r| templates.has(&r.email.template.value))
    {
        let name = &r.email.template.value;
        let own = templates.languages_of(name);
        let mut langs = own.clone();
        langs.push(home.clone());
        langs.sort();
        langs.dedup();
        for lang in &langs {
            out.extend(every_problem(
                templates,
                r,
                sample_context_of(r, office, lang),
                home,
            ));
        }
        let at = |s: &serde_saphyr::Spanned<Texts>, message: String| TemplateProblem {
            file: r.file.clone(),
            line: s.referenced.line(),
            column: s.referenced.column(),
            message: format!("action {}: {message}", r.id.value),
        };
        for lang in &own {
            let variant = format!("{name}.{lang}");
            if templates.has_text(name) && !templates.has_text(&variant) {
                out.push(TemplateProblem {
                    file: templates.dir.join(format!("{variant}.txt.hbs")),
                    line: 0,
                    column: 0,
                    message: format!(
                        "is missing: {name} has a text part and a {lang} HTML part ({variant}.html.hbs), but no {lang} text part (used by action {})",
                        r.id.value
                    ),
                });
            }
        }
        for (what, texts) in [("email.subject", &r.email.subject), ("name", &r.name)] {
            let crate::rules::action::Texts::Many(map) = &texts.value else {
                continue;
            };
            let has = |l: &Lang| {
                map.keys()
                    .filter_map(|k| Lang::parse(k))
                    .any(|k| k == *l || k == l.base())
            };
            if !has(home) {
                out.push(at(
                    texts,
                    format!(
                        "{what} has no text for the office language {home} (office.locale); add `{}: ...`",
                        home.base()
                    ),
                ));
            }
            for lang in &own {
                if !has(lang) {
                    out.push(at(
                        texts,
                        format!(
                            "{what} has no text for {lang}, which templates/{name}.{lang}.html.hbs is written in; add `{lang}: ...`"
                        ),
                    ));
                }
            }
            for k in map.keys().filter_map(|k| Lang::parse(k)) {
                let written =
                    k == *home || k == home.base() || own.iter().any(|l| *l == k || l.base() == k);
                if !written {
                    out.push(at(
                        texts,
                        format!(
                            "{what} has a text for {k}, but there is no templates/{name}.{k}.html.hbs, so no email is written in {k}"
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Office {
        Office {
            name: "O".into(),
            from: "O <o@example.org>".into(),
            verify_base_url: "https://o.example.org".into(),
            locale: Lang::english(),
            signer: None,
            linkedin_organization_id: None,
            reply_to: None,
        }
    }

    fn rule(subject: &str) -> ActionRule {
        let yaml = format!(
            "kind: action\nid: r\nname: R\ndata_group: course_participant\nevent: completed\nprocess: send_email\n\
             email:\n  template: t\n  subject: {subject:?}\ntiming:\n  anchor: event\n"
        );
        serde_saphyr::from_str(&yaml).expect("rule")
    }

    fn templates(html: &str, text: &str) -> (tempfile::TempDir, Templates) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("t.html.hbs"), html).expect("html");
        std::fs::write(dir.path().join("t.txt.hbs"), text).expect("txt");
        let t = Templates::load(dir.path()).expect("load");
        (dir, t)
    }

    #[test]
    fn html_escapes_values_and_text_and_subject_do_not() {
        let (_d, t) = templates(
            "<p>{{participant.full_name}}</p>",
            "{{participant.full_name}}",
        );
        let mut ctx = sample_context(&office(), &Lang::english());
        ctx["participant"]["full_name"] = json!("Brouwer & Zn <b>'t Hof</b>");
        let r = t
            .render(
                &rule("Hi {{participant.full_name}}"),
                &ctx,
                &Lang::english(),
            )
            .expect("render");
        assert_eq!(
            r.html,
            "<p>Brouwer &amp; Zn &lt;b&gt;&#x27;t Hof&lt;/b&gt;</p>"
        );
        assert_eq!(r.text.as_deref(), Some("Brouwer & Zn <b>'t Hof</b>"));
        assert_eq!(r.subject, "Hi Brouwer & Zn <b>'t Hof</b>");
    }

    #[test]
    fn strict_mode_makes_an_unknown_variable_an_error_not_a_blank() {
        let (_d, t) = templates("<p>{{participant.fullname}}</p>", "x");
        let e = t
            .render(
                &rule("Hi"),
                &sample_context(&office(), &Lang::english()),
                &Lang::english(),
            )
            .unwrap_err();
        assert!(
            e.message
                .contains("unknown variable `participant.fullname`"),
            "{e}"
        );
        assert!(e.file.ends_with("t.html.hbs"));
    }
}
