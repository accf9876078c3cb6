// Drives registrar's office pages in Chromium (Debian's, through playwright-core): the
// planner's day. Run by tests/office_pages.rs with BASE, ACCOUNT, PASSWORD, SHOTS and
// CHROMIUM set; prints "all checks passed" and exits 0, or prints the failed check and
// exits 1. Screenshots go to SHOTS as <page>.<lang>.png.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const { BASE, ACCOUNT, PASSWORD, SHOTS } = process.env;
const executablePath = execFileSync('sh', ['-c', `command -v ${process.env.CHROMIUM || 'chromium'}`])
  .toString().trim();

let checks = 0;
function check(ok, what) {
  checks += 1;
  if (!ok) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  // ---- nothing without a session ----
  const anon = await browser.newContext();
  const p0 = await anon.newPage();
  for (const path of ['/office/', '/office/deliveries', '/office/deliveries?state=failed',
    '/office/deliveries/1', '/office/deliveries/1/html', '/office/deliveries/1/part/0',
    '/office/approvals', '/office/courses', '/office/courses/ehbo-2026-03', '/office/people',
    '/office/people/siem']) {
    await p0.goto(BASE + path);
    check(new URL(p0.url()).pathname === '/office/sign-in', `${path} without a session ends at ${p0.url()}`);
    const body = await p0.content();
    check(!body.includes('Siem') && !body.includes('@example.nl'), `${path} without a session shows no data`);
  }
  for (const path of ['/office/deliveries/1/retry', '/office/approvals', '/office/sign-out']) {
    const r = await anon.request.post(BASE + path, { form: { csrf: 'x', id: '1' }, maxRedirects: 0 });
    check(r.status() === 401, `POST ${path} without a session is refused (got ${r.status()})`);
  }
  // A wrong password says so and signs nobody in.
  await p0.goto(BASE + '/office/sign-in');
  await p0.fill('input[name=name]', ACCOUNT);
  await p0.fill('input[name=password]', 'not the password');
  await p0.click('button[type=submit]');
  check((await p0.locator('.error').count()) === 1, 'a wrong password shows an error');
  check(new URL(p0.url()).pathname === '/office/sign-in', 'a wrong password stays on the sign-in page');
  // A sign-in form from elsewhere (no token of this site) is refused.
  const forged = await anon.request.post(BASE + '/office/sign-in',
    { form: { name: ACCOUNT, password: PASSWORD }, maxRedirects: 0 });
  check(forged.status() === 403, `a sign-in without the form's token is refused (got ${forged.status()})`);
  await anon.close();

  async function signIn(page) {
    await page.goto(BASE + '/office/');
    check(new URL(page.url()).pathname === '/office/sign-in', 'the overview asks to sign in first');
    await page.fill('input[name=name]', ACCOUNT);
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    check(new URL(page.url()).pathname === '/office/', `signed in, on the overview (at ${page.url()})`);
  }
  const shot = (page, name, lang) => page.screenshot({ path: `${SHOTS}/${name}.${lang}.png`, fullPage: true });

  // ---- the planner's day, in English ----
  const en = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 900 } });
  const page = await en.newPage();
  await signIn(page);
  check(await page.getAttribute('html', 'lang') === 'en', 'English for an English browser');
  const cookies = await en.cookies();
  const session = cookies.find(c => c.name === 'registrar_office');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
  check(await page.locator('.card').count() >= 5, 'the overview shows its figures');
  await shot(page, 'overview', 'en');

  // The failed delivery of the participant without an email address.
  await page.goto(BASE + '/office/deliveries?state=failed');
  const row = page.locator('tr', { hasText: 'siem' }).first();
  check(await row.count() === 1, 'the failed deliveries list Siem');
  check((await row.textContent()).includes('address'), `the row says why: ${await row.textContent()}`);
  await shot(page, 'deliveries-failed', 'en');
  await row.locator('a').first().click();
  const deliveryUrl = page.url();
  check(/\/office\/deliveries\/\d+$/.test(new URL(deliveryUrl).pathname), `a row opens its delivery (${deliveryUrl})`);
  const attemptsBefore = await page.locator('h2:has-text("Attempts") + div tbody tr').count();
  check(attemptsBefore >= 1, `the failed attempt is listed (${attemptsBefore})`);
  await shot(page, 'delivery-failed', 'en');

  // A form without its CSRF token changes nothing.
  const id = new URL(deliveryUrl).pathname.split('/').pop();
  const noToken = await en.request.post(`${BASE}/office/deliveries/${id}/retry`, { form: {}, maxRedirects: 0 });
  check(noToken.status() === 403, `a retry without the CSRF token is refused (got ${noToken.status()})`);
  const wrongToken = await en.request.post(`${BASE}/office/deliveries/${id}/retry`, { form: { csrf: 'forged' }, maxRedirects: 0 });
  check(wrongToken.status() === 403, `a retry with a wrong CSRF token is refused (got ${wrongToken.status()})`);
  await page.reload();
  check(await page.locator('h2:has-text("Attempts") + div tbody tr').count() === attemptsBefore, 'a refused form made no attempt');

  // Retry, with nothing fixed: still failed, and one more attempt.
  await page.click('button:has-text("Retry")');
  check((await page.locator('.notice').count()) === 1, 'the retry is confirmed');
  let attemptsAfter = attemptsBefore;
  for (let i = 0; i < 100 && attemptsAfter === attemptsBefore; i++) {
    await page.waitForTimeout(200);
    await page.goto(deliveryUrl);
    attemptsAfter = await page.locator('h2:has-text("Attempts") + div tbody tr').count();
  }
  check(attemptsAfter === attemptsBefore + 1, `a new attempt is listed (${attemptsBefore} -> ${attemptsAfter})`);
  check((await page.locator('h1 .badge').textContent()).includes('failed'), 'still failed');
  await shot(page, 'delivery-retried', 'en');

  // Approve a manual message, and see it sent.
  await page.goto(BASE + '/office/approvals');
  const awaiting = await page.locator('tbody tr').count();
  check(awaiting >= 1, `messages await approval (${awaiting})`);
  await shot(page, 'approvals', 'en');
  const first = page.locator('tbody tr').first();
  const person = (await first.locator('td').nth(4).locator('a').getAttribute('href')).split('/').pop();
  await first.locator('a:has-text("Preview")').click();
  check((await page.locator('dd', { hasText: '@' }).count()) >= 1, 'the preview names the recipient');
  check((await page.locator('pre').textContent()).length > 20, 'the preview shows the text');
  await shot(page, 'approval-preview', 'en');
  await page.click('button:has-text("Approve and send")');
  check(new URL(page.url()).pathname === '/office/approvals', 'back to the list after approving');
  check((await page.locator('.notice').textContent()).includes('1 approved'), 'the approval is confirmed');
  let sent = false;
  for (let i = 0; i < 100 && !sent; i++) {
    await page.goto(`${BASE}/office/deliveries?rule=result-failed&person=${person}`);
    sent = (await page.locator('tbody tr', { hasText: 'sent' }).count()) === 1;
    if (!sent) await page.waitForTimeout(200);
  }
  check(sent, `the approved message to ${person} is sent`);
  await page.locator('tbody tr a').first().click();
  check((await page.locator('iframe').count()) === 1, 'the sent message shows as HTML');
  check((await page.locator('pre').textContent()).length > 20, 'and as text');
  check(await page.locator('tbody tr', { hasText: 'sent' }).count() >= 1, 'its attempt is listed');
  await shot(page, 'delivery-sent', 'en');

  // A certificate that was not sent, and why: the course page gives the plan's reasons.
  await page.goto(BASE + '/office/courses/ehbo-2026-03');
  const certificates = page.locator('h2:has-text("Emails of this course") + div tr', { hasText: 'certificate-on-completion' });
  check(/\d+ \/ 11/.test(await certificates.textContent()), `the course says how many of its 11 got a certificate: ${await certificates.textContent()}`);
  const why = await page.locator('tr.main:has-text("Daan") + tr.sub').textContent();
  check(why.includes('certificate-on-completion'), `Daan's certificate rule is listed: ${why}`);
  check(/not complete|attendance/.test(why), `and why it was not sent: ${why}`);
  await shot(page, 'course', 'en');
  await page.goto(BASE + '/office/courses/bhv-2026-10');
  const siem = page.locator('tr.main', { hasText: 'Siem' }).first();
  const siemWhy = await page.locator('tr.main:has-text("Siem") + tr.sub').textContent();
  check(/proof-of-participation/.test(siemWhy) && /attendance 1 of 2/.test(siemWhy), `Siem's proof waits, and why: ${siemWhy}`);
  check((await siem.textContent()).includes('no email address'), 'the course page says Siem has no email address');
  await shot(page, 'course-bhv', 'en');

  // A person: enrolments, certificates with their verify links, every email.
  await page.goto(BASE + '/office/people/jan');
  check(await page.locator('a[href^="/verify/"]').count() >= 1, 'Jan\'s certificate links to its verify page');
  check(await page.locator('h2:has-text("Every email") + div tbody tr').count() >= 2, 'Jan\'s emails are listed');
  await shot(page, 'person', 'en');
  // Jan's certificate email, as sent: its PDF (read back by pdftotext in the Rust test).
  await page.locator('h2:has-text("Every email") + div tr', { hasText: 'certificate-on-completion' }).locator('a').first().click();
  const pdfLink = page.locator('a[href$="/part/1"]');
  check((await pdfLink.textContent()).endsWith('.pdf'), `the certificate email lists its PDF: ${await pdfLink.textContent()}`);
  const pdf = await en.request.get(BASE + await pdfLink.getAttribute('href'));
  check(pdf.headers()['content-type'] === 'application/pdf', `the PDF is served as a PDF (${pdf.headers()['content-type']})`);
  check(/^attachment; filename=".+\.pdf"$/.test(pdf.headers()['content-disposition']), `the PDF is a download with its name (${pdf.headers()['content-disposition']})`);
  const bytes = await pdf.body();
  check(bytes.subarray(0, 5).toString() === '%PDF-', 'the attachment is a PDF');
  writeFileSync(`${SHOTS}/certificate-jan.pdf`, bytes);
  await shot(page, 'delivery-certificate', 'en');
  await page.goto(BASE + '/office/courses');
  await shot(page, 'courses', 'en');
  await page.goto(BASE + '/office/people');
  await shot(page, 'people', 'en');
  await page.goto(BASE + '/office/deliveries');
  await shot(page, 'deliveries', 'en');

  // On a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE + '/office/');
  await shot(page, 'overview-phone', 'en');
  await page.goto(BASE + '/office/courses/ehbo-2026-03');
  await shot(page, 'course-phone', 'en');

  // Sign out: the session is gone.
  await page.click('button:has-text("Sign out")');
  await page.goto(BASE + '/office/deliveries');
  check(new URL(page.url()).pathname === '/office/sign-in', 'signed out, the pages ask to sign in again');
  await en.close();

  // ---- the same pages in Dutch ----
  const nl = await browser.newContext({ locale: 'nl-NL', viewport: { width: 1280, height: 900 } });
  const pnl = await nl.newPage();
  await signIn(pnl);
  check(await pnl.getAttribute('html', 'lang') === 'nl', 'Dutch for a Dutch browser');
  check((await pnl.locator('nav').textContent()).includes('Verzendingen'), 'the navigation is in Dutch');
  await shot(pnl, 'overview', 'nl');
  for (const [name, path] of [['deliveries-failed', '/office/deliveries?state=failed'],
    ['approvals', '/office/approvals'], ['course', '/office/courses/ehbo-2026-03'],
    ['course-bhv', '/office/courses/bhv-2026-10'], ['person', '/office/people/jan'],
    ['courses', '/office/courses'], ['people', '/office/people']]) {
    await pnl.goto(BASE + path);
    check(await pnl.getAttribute('html', 'lang') === 'nl', `${path} in Dutch`);
    await shot(pnl, name, 'nl');
  }
  await pnl.goto(BASE + '/office/courses/ehbo-2026-03');
  const waarom = await pnl.locator('tr.main:has-text("Daan") + tr.sub').textContent();
  check(waarom.includes('nog niet afgerond'), `why Daan has no certificate, in Dutch: ${waarom}`);
  await pnl.goto(deliveryUrl);
  check((await pnl.locator('h1').textContent()).includes('Verzending'), 'a delivery in Dutch');
  await shot(pnl, 'delivery-retried', 'nl');
  // The language can be switched, and stays switched.
  await pnl.click('a:has-text("English")');
  check(await pnl.getAttribute('html', 'lang') === 'en', 'switched to English');
  await pnl.goto(BASE + '/office/courses');
  check(await pnl.getAttribute('html', 'lang') === 'en', 'English stays');
  await nl.close();
  console.log(`all checks passed (${checks})`);
} catch (e) {
  console.log(`${e.message}\n(${checks} checks passed before)`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
