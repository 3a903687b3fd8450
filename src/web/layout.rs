//! The frame of every page: head (stylesheet, script), the top bar with
//! navigation, the search box, the language switch and logout, and the
//! small pieces pages share (hidden CSRF field, notices).

use maud::{html, Markup, DOCTYPE};

use super::assets::{CSS_URL, JS_URL};
use super::session::{Ctx, CSRF_FIELD};

/// The hidden field every unsafe form carries.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf); }
}

/// A table's head row: one column header per label.
pub fn head<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> Markup {
    html! {
        thead { tr {
            @for label in labels { th scope="col" { (label.as_ref()) } }
        } }
    }
}

pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let lang = ctx.lang;
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (ctx.t("app.name")) }
                link rel="stylesheet" href=(*CSS_URL);
                script src=(*JS_URL) defer {}
            }
            body {
                a.skip href="#main" { (ctx.t("app.skip")) }
                header.top {
                    a.brand href="/" { (ctx.t("app.name")) }
                    @if ctx.principal.is_some() {
                        nav aria-label=(ctx.t("nav.main")) {
                            a href="/" { (ctx.t("nav.desktop")) }
                            a href="/clients" { (ctx.t("nav.clients")) }
                            a href="/contacts" { (ctx.t("nav.contacts")) }
                            a href="/deals" { (ctx.t("nav.deals")) }
                            a href="/invoices" { (ctx.t("nav.invoices")) }
                            a #nav-conflicts href="/conflicts" { (ctx.t("nav.conflicts")) }
                            a href="/sync" { (ctx.t("nav.sync")) }
                            a href="/users" { (ctx.t("nav.users")) }
                        }
                        form.search role="search" method="get" action="/search" {
                            label.visually-hidden for="top-q" { (ctx.t("app.search")) }
                            input #top-q type="search" name="q" placeholder=(ctx.t("app.search_placeholder"));
                            button type="submit" { (ctx.t("app.search")) }
                        }
                    }
                    div.spacer {}
                    form.inline method="post" action="/lang" {
                        (csrf_field(ctx))
                        input type="hidden" name="lang" value=(lang.other().code());
                        input type="hidden" name="back" value=(ctx.here);
                        button.link #switch-lang type="submit" lang=(lang.other().code()) {
                            (ctx.t("app.switch_language"))
                        }
                    }
                    @if let Some(user) = &ctx.principal {
                        span.user {
                            span.visually-hidden { (ctx.t("app.signed_in_as")) " " }
                            (user.display_name.as_deref().unwrap_or(&user.login))
                        }
                        form.inline method="post" action="/logout" {
                            (csrf_field(ctx))
                            button.link #logout type="submit" { (ctx.t("app.logout")) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (body)
                }
            }
        }
    }
}
