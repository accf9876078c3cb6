//! Certificate PDFs per second on one core (issue 5): the example layout
//! (templates/certificate.svg.hbs) rendered for N different participants and converted to
//! PDF with the shipped fonts, on the calling thread only.
//!
//! `cargo bench --bench certificates` (REGISTRAR_BENCH_PDFS=N to change the 1,000).

use registrar::config::Office;
use registrar::render::{Templates, sample_context};
use std::time::Instant;

fn main() {
    let n: usize = std::env::var("REGISTRAR_BENCH_PDFS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let templates = Templates::load(&dir).unwrap_or_else(|p| panic!("templates: {p:?}"));
    let office = Office {
        name: "Opleidingscentrum Voorbeeld".into(),
        from: "Opleidingscentrum <opleidingen@example.nl>".into(),
        verify_base_url: "https://opleidingen.example.nl".into(),
        locale: registrar::lang::Lang::parse("nl").expect("nl"),
        signer: None,
        linkedin_organization_id: None,
        reply_to: None,
    };
    let base = sample_context(&office, &office.locale);
    let names = [
        "Anne de Vries",
        "Zoë van 't Hof",
        "Mehmet Yılmaz",
        "Joëlle Peeters-Ruiz & Partner",
    ];
    // Warm up once (font parsing is shared; the first document pays for lazy set-up).
    templates.render_pdf("certificate", &base).expect("pdf");
    let start = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let mut ctx = base.clone();
        ctx["participant"]["full_name"] = format!("{} {i}", names[i % names.len()]).into();
        ctx["certificate"]["number"] = format!("FA-2026-{:06}", i + 1).into();
        bytes += templates
            .render_pdf("certificate", &ctx)
            .expect("pdf")
            .len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "certificate PDFs: {n} rendered and converted on one thread in {secs:.2} s = {:.0} PDFs/s (average {} KiB)",
        n as f64 / secs,
        bytes / n / 1024
    );
}
