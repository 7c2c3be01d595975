//! Checked answers bound as parallel arrays and read back as the rows of a `v` CTE: the one
//! shape in which the task results and the answer cache are written.

use chrono::NaiveDate;
use wacheck_core::{E164, Outcome, WhatsApp};

/// Answers as parallel arrays, bound as `$first..$first+13` of an `UNNEST` (see [`answers_cte`]).
pub(crate) struct AnswerColumns {
    number: Vec<i64>,
    outcome: Vec<&'static str>,
    reason: Vec<Option<String>>,
    jid: Vec<Option<String>>,
    lid: Vec<Option<String>>,
    business: Vec<Option<bool>>,
    signature: Vec<Option<String>>,
    status_update: Vec<Option<NaiveDate>>,
    has_picture: Vec<Option<bool>>,
    privacy: Vec<Option<String>>,
    account: Vec<Option<String>>,
    cached: Vec<bool>,
    simulated: Vec<bool>,
    details: Vec<bool>,
}

impl AnswerColumns {
    pub(crate) fn of(results: &[(E164, Outcome)]) -> Self {
        let n = results.len();
        let mut c = AnswerColumns {
            number: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
            jid: Vec::with_capacity(n),
            lid: Vec::with_capacity(n),
            business: Vec::with_capacity(n),
            signature: Vec::with_capacity(n),
            status_update: Vec::with_capacity(n),
            has_picture: Vec::with_capacity(n),
            privacy: Vec::with_capacity(n),
            account: Vec::with_capacity(n),
            cached: Vec::with_capacity(n),
            simulated: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
        };
        for (i, o) in results {
            let w = match o.whatsapp.unwrap_or(WhatsApp::Unknown) {
                WhatsApp::Invalid => WhatsApp::Unknown,
                w => w,
            };
            c.number.push(i.key() as i64);
            c.outcome.push(w.as_str());
            c.reason.push(o.reason.clone());
            c.jid.push(o.jid.clone());
            c.lid.push(o.lid.clone());
            c.business.push(o.business);
            c.signature.push(o.signature.clone());
            c.status_update.push(o.status_update);
            c.has_picture.push(o.has_picture);
            c.privacy.push(o.privacy.clone());
            c.account.push(o.account.clone());
            c.cached.push(o.cached);
            c.simulated.push(o.simulated);
            c.details.push(o.details_checked);
        }
        c
    }

    pub(crate) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.number)
            .bind(&self.outcome)
            .bind(&self.reason)
            .bind(&self.jid)
            .bind(&self.lid)
            .bind(&self.business)
            .bind(&self.signature)
            .bind(&self.status_update)
            .bind(&self.has_picture)
            .bind(&self.privacy)
            .bind(&self.account)
            .bind(&self.cached)
            .bind(&self.simulated)
            .bind(&self.details)
    }
}

/// `v AS (…)`: the answers bound from `$first` on, as rows.
pub(crate) fn answers_cte(first: usize) -> String {
    let types = [
        "bigint", "text", "text", "text", "text", "bool", "text", "date", "bool", "text", "text",
        "bool", "bool", "bool",
    ];
    let args: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    format!(
        "v AS (SELECT * FROM UNNEST({}) AS v(number, outcome, reason, jid, lid, business, \
         signature, status_update, has_picture, privacy, account_id, cached, simulated, details))",
        args.join(", ")
    )
}
