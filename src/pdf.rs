//! Certificate PDFs (D5): a handlebars SVG template (`templates/NAME.svg.hbs`) rendered
//! against the participant's context and converted with svg2pdf. Fonts come only from
//! `templates/fonts/` (never the system's), so a certificate looks the same on every
//! machine and every glyph of a name is embedded.

use std::path::Path;
use std::sync::Arc;
use svg2pdf::usvg::{self, fontdb};

/// The fonts of the templates directory.
#[derive(Clone)]
pub struct Fonts {
    db: Arc<fontdb::Database>,
    family: String,
}

impl Fonts {
    /// Loads every .ttf/.otf of `dir/fonts`; an error names what is missing.
    pub fn load(templates: &Path) -> Result<Fonts, String> {
        let dir = templates.join("fonts");
        let mut db = fontdb::Database::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: cannot read the fonts directory: {e}", dir.display()))?;
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let ext = f
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("ttf" | "otf")) {
                let data =
                    std::fs::read(&f).map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
                db.load_font_data(data);
            }
        }
        let family = db
            .faces()
            .next()
            .and_then(|f| f.families.first().map(|(name, _)| name.clone()))
            .ok_or_else(|| {
                format!(
                    "{}: no .ttf or .otf font (certificates embed their fonts; e.g. copy DejaVu Sans there)",
                    dir.display()
                )
            })?;
        Ok(Fonts {
            db: Arc::new(db),
            family,
        })
    }
}

/// The SVG `svg` (already rendered from its template) as a PDF.
pub fn svg_to_pdf(svg: &str, fonts: &Fonts) -> Result<Vec<u8>, String> {
    let options = usvg::Options {
        fontdb: Arc::clone(&fonts.db),
        font_family: fonts.family.clone(),
        ..usvg::Options::default()
    };
    let tree =
        usvg::Tree::from_str(svg, &options).map_err(|e| format!("the SVG is not valid: {e}"))?;
    // usvg measures in CSS pixels (96 per inch): at 96 dpi a 297mm x 210mm SVG becomes an
    // A4 landscape page of 842 x 595 points.
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi: 96.0 },
    )
    .map_err(|e| format!("cannot convert the SVG to PDF: {e}"))
}

/// The font size (in SVG user units) at which a name of `chars` characters fits a line
/// that holds 28 characters at `size` (the example layout's 680-unit name line in bold
/// DejaVu Serif at 44): long names shrink, down to a quarter of `size`.
pub fn fitted_size(chars: usize, size: f64) -> f64 {
    const FITS: f64 = 28.0;
    let n = chars.max(1) as f64;
    if n <= FITS {
        size
    } else {
        (size * FITS / n).max(size * 0.25).round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_long_names_shrink_short_ones_keep_their_size() {
        assert_eq!(fitted_size(14, 40.0), 40.0);
        assert_eq!(fitted_size(56, 40.0), 20.0);
        assert_eq!(fitted_size(500, 40.0), 10.0);
    }
}
