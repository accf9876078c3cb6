//! The overview: today and this week, the latest failures, the next due emails, health.

use super::*;

pub async fn overview(State(s): State<ApiState>, ctx: Ctx) -> Response {
    let ui = &ctx.ui;
    let now = Utc::now();
    let today = now.with_timezone(&ui.tz).date_naive();
    let day_start = local_midnight(today, ui);
    let week_start = local_midnight(
        today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday())),
        ui,
    );
    let started = std::time::Instant::now();
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let sent_today = outbox::sent_since(&mut tx, day_start).await?;
        let sent_week = outbox::sent_since(&mut tx, week_start).await?;
        let failed = outbox::in_state(&mut tx, DeliveryState::Failed, week_start).await?;
        let retrying = outbox::in_state(&mut tx, DeliveryState::Retrying, week_start).await?;
        let queued = outbox::in_state(&mut tx, DeliveryState::Queued, week_start).await?;
        let (waiting, scheduled, awaiting) = actions::open_counts(&mut tx, now).await?;
        let next = actions::next_due_list(&mut tx, now, 10).await?;
        let recent = outbox::page(
            &mut tx,
            &Filter {
                state: Some(DeliveryState::Failed),
                ..Filter::default()
            },
            None,
            5,
        )
        .await?;
        let names = names_of(
            &mut tx,
            recent
                .iter()
                .map(|r| r.person.as_str())
                .chain(next.iter().map(|n| n.2.as_str())),
        )
        .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((
            sent_today, sent_week, failed, retrying, queued, waiting, scheduled, awaiting, next,
            recent, names,
        ))
    };
    let (
        sent_today,
        sent_week,
        failed,
        retrying,
        queued,
        waiting,
        scheduled,
        awaiting,
        next,
        recent,
        names,
    ) = match read.await {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let db_ms = started.elapsed().as_millis();
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", ui.t("Overview", "Overzicht"));
    let card = |href: &str, n: i64, en: &str, nl: &str, class: &str| {
        format!(
            "<a class=\"card\" href=\"{href}\"><b class=\"{class}\">{n}</b><span>{}</span></a>",
            esc(ui.t(en, nl))
        )
    };
    let today_q = today.format("%Y-%m-%d");
    let week_q = (today
        - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday())))
    .format("%Y-%m-%d");
    b.push_str("<div class=\"cards\">");
    b.push_str(&card(
        &format!("/office/deliveries?state=sent&from={today_q}"),
        sent_today,
        "sent today",
        "vandaag verzonden",
        "ok",
    ));
    b.push_str(&card(
        &format!("/office/deliveries?state=sent&from={week_q}"),
        sent_week,
        "sent this week",
        "deze week verzonden",
        "ok",
    ));
    b.push_str(&card(
        "/office/deliveries?state=failed",
        failed.0,
        "failed (all)",
        "mislukt (alle)",
        if failed.0 > 0 { "bad" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/deliveries?state=retrying",
        retrying.0,
        "retrying",
        "nieuwe poging gepland",
        if retrying.0 > 0 { "warn" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/approvals",
        awaiting,
        "awaiting approval",
        "wachten op goedkeuring",
        if awaiting > 0 { "warn" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/deliveries?state=queued",
        queued.0,
        "queued to send",
        "klaar om te verzenden",
        "info",
    ));
    let waiting_label = if ui.nl {
        format!("wachtend (voorwaarden of tijd); {scheduled} gepland voor later")
    } else {
        format!("waiting (for conditions or time); {scheduled} scheduled for later")
    };
    b.push_str(&card(
        "#next",
        waiting,
        &waiting_label,
        &waiting_label,
        "muted",
    ));
    b.push_str("</div>");
    if failed.1 > 0 {
        let _ = write!(
            b,
            "<p class=\"error\">{} <a href=\"/office/deliveries?state=failed\">{}</a></p>",
            esc(&if ui.nl {
                format!("Deze week mislukt: {}.", failed.1)
            } else {
                format!("Failed this week: {}.", failed.1)
            }),
            ui.t("See why", "Bekijk waarom")
        );
    }

    // Health.
    let _ = write!(
        b,
        "<h2>{}</h2><dl class=\"facts\">",
        ui.t("Health", "Systeemstatus")
    );
    let _ = write!(
        b,
        "<dt>{}</dt><dd><span class=\"ok\">{}</span> ({db_ms} ms, {})</dd>",
        ui.t("Database", "Database"),
        ui.t("answers", "antwoordt"),
        s.store.backend()
    );
    let delivery = match s.delivery.paused() {
        None => format!("<span class=\"ok\">{}</span>", ui.t("working", "werkt")),
        Some(p) => format!(
            "<span class=\"bad\">{}</span> {} — {} {}",
            ui.t("paused", "gepauzeerd"),
            esc(&p.reason),
            ui.t("tries again at", "probeert opnieuw om"),
            time(p.retry_at, ui)
        ),
    };
    let _ = write!(
        b,
        "<dt>{}</dt><dd>{delivery}</dd>",
        ui.t("Mail delivery", "Verzending e-mail")
    );
    let beat = s.scheduler_beat.load(std::sync::atomic::Ordering::Relaxed);
    let pass = s.pass_millis.load(std::sync::atomic::Ordering::Relaxed);
    let last = match DateTime::<Utc>::from_timestamp_millis(beat).filter(|_| beat > 0) {
        Some(t) => format!("{} ({} {pass} ms)", time(t, ui), ui.t("took", "duurde")),
        None => ui.t("not yet", "nog niet").to_string(),
    };
    let _ = write!(
        b,
        "<dt>{}</dt><dd>{last}</dd></dl>",
        ui.t("Last pass", "Laatste ronde")
    );

    // The latest failures, with their reasons.
    if !recent.is_empty() {
        let _ = write!(
            b,
            "<h2>{}</h2>{}",
            ui.t("Latest failed deliveries", "Laatst mislukte verzendingen"),
            deliveries_table(&recent, &names, ui)
        );
    }

    let _ = write!(
        b,
        "<h2 id=\"next\">{}</h2>",
        ui.t("Next due emails", "Eerstvolgende e-mails")
    );
    if next.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t(
                "Nothing is scheduled to be evaluated later.",
                "Er staat niets gepland om later te beoordelen."
            )
        );
    } else {
        b.push_str(&table_head(
            &[
                col("Due", "Gepland"),
                col("Email (rule)", "E-mail (regel)"),
                col("Course", "Cursus"),
                col("Person", "Persoon"),
            ],
            ui,
        ));
        for (rule, course, person, due) in &next {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(*due, ui),
                esc(rule),
                course_link(course),
                person_named(person, &names)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    page(&ctx, "/office/", ui.t("Overview", "Overzicht"), &b)
}
