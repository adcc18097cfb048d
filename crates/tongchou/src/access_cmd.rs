//! `tongchou user`, `tongchou token` and `tongchou access`: accounts, API tokens, access
//! requests and the providing unit's decisions. At the CLI the operator of the data
//! directory acts `--as` a named user, who must hold the role the action needs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tongchou_access::requests::{self, Approval, NewRequest, Purpose, View};
use tongchou_access::users::UserChange;
use tongchou_access::{Principal, Scopes, User, credentials};
use tongchou_model::UserRole;
use tongchou_store::DataDir;

use crate::catalog_cmd::print_json;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        name: String,
        #[arg(long)]
        unit: String,
        /// platform_admin, steward, analyst, leader or inspector.
        #[arg(long)]
        role: String,
        /// Leaders only: the level (1–10) resources may be opened to.
        #[arg(long)]
        level: Option<i64>,
    },
    /// Set a user's password; the new one is read from standard input. Every session of
    /// the account ends (browsers and PostgreSQL connections sign in again); tokens stay.
    Password { name: String },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// List the accounts wrong passwords have locked now (5 in 15 minutes).
    Locked {
        #[arg(long)]
        json: bool,
    },
    /// Lift a sign-in lockout: forget the account's failed sign-ins.
    Unlock { name: String },
    /// Change a user's role or level, or disable or enable the account.
    Set {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        level: Option<i64>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token; the secret is printed once and never stored.
    Create {
        #[arg(long = "as")]
        user: String,
        /// read, query, write, decide, admin or all, comma-separated.
        #[arg(long, default_value = "read")]
        scopes: String,
        /// Days until it expires (1–366).
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        json: bool,
    },
    /// List a user's tokens (never their secrets).
    List {
        #[arg(long = "as")]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (its owner or a platform admin).
    Revoke {
        id: String,
        #[arg(long = "as")]
        user: String,
    },
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// File an access request (共享申请); prints the request id.
    Request {
        #[arg(long = "as")]
        user: String,
        #[arg(long)]
        resource: String,
        /// Field names, comma-separated.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// A purpose code from `tongchou access purposes`.
        #[arg(long)]
        purpose: String,
        /// What the data is for, in your words.
        #[arg(long, default_value = "")]
        detail: String,
        #[arg(long, default_value = "")]
        legal_basis: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request, possibly narrower (the providing unit's steward).
    Approve {
        id: i64,
        #[arg(long = "as")]
        user: String,
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        #[arg(long)]
        row_filter: Option<String>,
        /// field=MASK (repeat the flag or list several); MASK `none` gives the raw value.
        #[arg(long = "mask", num_args = 1..)]
        masks: Vec<String>,
        /// Why sensitive fields are given raw (`none`): required then, and recorded.
        #[arg(long)]
        raw_reason: Option<String>,
        /// Last day the grant holds.
        #[arg(long)]
        until: Option<String>,
        /// `user` (the requester), `unit` (everyone of the requesting unit) or `role:ROLE`.
        #[arg(long, default_value = "user")]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Refuse a request with a reason (the providing unit's steward).
    Refuse {
        id: i64,
        #[arg(long = "as")]
        user: String,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your own pending request.
    Withdraw {
        id: i64,
        #[arg(long = "as")]
        user: String,
    },
    /// Revoke a grant (the providing unit's steward); the next statement is refused.
    Revoke {
        grant: i64,
        #[arg(long = "as")]
        user: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Requests and grants: yours, your unit's queue, what your unit provides, or all.
    List {
        #[arg(long = "as")]
        user: Option<String>,
        /// mine, queue, provided or all.
        #[arg(long, default_value = "mine")]
        view: String,
        /// Grants instead of requests.
        #[arg(long)]
        grants: bool,
        /// Only requests unanswered past their deadline (ten working days).
        #[arg(long)]
        overdue: bool,
        #[arg(long)]
        json: bool,
    },
    /// What a user may read of a resource for a purpose: fields, masks, row filter.
    Decide {
        #[arg(long = "as")]
        user: String,
        #[arg(long)]
        resource: String,
        #[arg(long)]
        purpose: String,
    },
    /// Open a resource only to leaders of a level or above (`none` lifts it).
    Policy {
        resource: String,
        #[arg(long = "as")]
        user: Option<String>,
        #[arg(long)]
        min_leader_level: String,
    },
    /// The bureau's list of purposes.
    Purposes {
        #[command(subcommand)]
        command: Option<PurposeCommand>,
    },
    /// Mark a day as a public holiday or a make-up working day (调休), or back to normal.
    Calendar {
        day: String,
        /// holiday, workday or normal.
        kind: String,
    },
    /// The newest sign-ins, requests, decisions and grant changes.
    Events {
        #[arg(short = 'n', default_value_t = 20)]
        n: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PurposeCommand {
    /// Add or rename a purpose.
    Add {
        code: String,
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "")]
        label_en: String,
    },
}

fn parse_role(text: &str) -> Result<UserRole> {
    UserRole::parse(text)
        .with_context(|| format!("unknown role '{text}': use one of {}", UserRole::choices()))
}

async fn optional_principal(dir: &DataDir, name: Option<&str>) -> Result<Option<Principal>> {
    Ok(match name {
        Some(name) => Some(Principal::of_user(dir.metadata(), name).await?),
        None => None,
    })
}

fn read_password() -> Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    Ok(password.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn user(data_dir: &Path, command: UserCommand) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    match command {
        UserCommand::Add {
            name,
            unit,
            role,
            level,
        } => {
            let role = parse_role(&role)?;
            let user = User {
                name: name.clone(),
                unit,
                role,
                level,
            };
            tongchou_access::add_user(&dir, None, &user, &read_password()?).await?;
            println!("已添加用户 added user {name} ({role})");
        }
        UserCommand::Password { name } => {
            let password = read_password()?;
            tongchou_access::users::change_password(&dir, None, &name, None, &password, "cli")
                .await?;
            println!("已修改密码 set a new password for {name}; their sessions have ended");
        }
        UserCommand::List { json } => {
            let users = tongchou_access::list_users(dir.metadata()).await?;
            if json {
                return print_json(&users);
            }
            for u in users {
                println!(
                    "{}\t{}\t{}{}",
                    u.name,
                    u.unit,
                    u.role,
                    u.level.map(|l| format!(" (level {l})")).unwrap_or_default()
                );
            }
        }
        UserCommand::Locked { json } => {
            let locks = credentials::lockouts(dir.metadata()).await?;
            if json {
                return print_json(&locks);
            }
            for l in locks {
                let from = l.addresses.join(", ");
                println!(
                    "{}\t{} failures\tuntil {}\tfrom {from}",
                    l.user, l.failures, l.until
                );
            }
        }
        UserCommand::Unlock { name } => {
            let cleared = credentials::unlock(&dir, None, &name).await?;
            println!("已解锁 unlocked {name}: {cleared} failed sign-in(s) forgotten");
        }
        UserCommand::Set {
            name,
            role,
            level,
            disable,
            enable,
        } => {
            let change = UserChange {
                role: role.as_deref().map(parse_role).transpose()?,
                level,
                disabled: (disable || enable).then_some(disable),
            };
            let user = tongchou_access::users::change_user(&dir, None, &name, &change).await?;
            println!(
                "已修改 changed {}: {}{}{}",
                user.name,
                user.role,
                user.level
                    .map(|l| format!(" level {l}"))
                    .unwrap_or_default(),
                if disable { " (disabled)" } else { "" }
            );
        }
    }
    Ok(())
}

pub async fn token(data_dir: &Path, command: TokenCommand) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    match command {
        TokenCommand::Create {
            user,
            scopes,
            days,
            label,
            json,
        } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            let issued =
                credentials::create_token(&dir, &who, &label, Scopes::parse(&scopes)?, Some(days))
                    .await?;
            if json {
                return print_json(&issued);
            }
            println!("{}", issued.secret);
            eprintln!(
                "令牌仅显示一次 this token is shown only once: id {}, scopes {}, expires {}",
                issued.id,
                issued.scopes.join(","),
                issued.expires_at.unwrap_or_default()
            );
        }
        TokenCommand::List { user, json } => {
            let tokens = credentials::list_tokens(&dir, &user).await?;
            if json {
                return print_json(&tokens);
            }
            for t in tokens {
                println!(
                    "{}\t{}\t{}\texpires {}{}",
                    t.id,
                    t.label,
                    t.scopes.join(","),
                    t.expires_at.unwrap_or_default(),
                    t.revoked_at
                        .map(|r| format!("\trevoked {r}"))
                        .unwrap_or_default()
                );
            }
        }
        TokenCommand::Revoke { id, user } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            credentials::revoke_credential(&dir, Some(&who), &id).await?;
            println!("已撤销令牌 revoked token {id}");
        }
    }
    Ok(())
}

fn parse_masks(masks: &[String]) -> Result<BTreeMap<String, String>> {
    masks
        .iter()
        .map(|m| match m.split_once('=') {
            Some((field, mask)) if !field.trim().is_empty() && !mask.trim().is_empty() => {
                Ok((field.trim().to_string(), mask.trim().to_string()))
            }
            _ => bail!("--mask takes field=MASK, e.g. --mask legal_rep=chinese_name; got '{m}'"),
        })
        .collect()
}

fn parse_view(text: &str) -> Result<View> {
    View::parse(text).with_context(|| format!("view '{text}' is not mine, queue, provided or all"))
}

pub async fn access(data_dir: &Path, command: AccessCommand) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    match command {
        AccessCommand::Request {
            user,
            resource,
            fields,
            purpose,
            detail,
            legal_basis,
            from,
            until,
            json,
        } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            let new = NewRequest {
                resource,
                fields,
                purpose,
                purpose_detail: detail,
                legal_basis,
                from,
                until,
            };
            let id = requests::file_request(&dir, &who, &new).await?;
            let request = requests::get_request(dir.metadata(), id).await?;
            if json {
                return print_json(&request);
            }
            println!("{id}");
            eprintln!(
                "已提交申请 request #{id} filed to unit {}; answer due by {}",
                request.provider, request.answer_due
            );
        }
        AccessCommand::Approve {
            id,
            user,
            fields,
            row_filter,
            masks,
            raw_reason,
            until,
            to,
            json,
        } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            let approval = Approval {
                fields,
                row_filter,
                masks: parse_masks(&masks)?,
                raw_reason,
                until,
                to: Some(to),
            };
            let grant = requests::approve(&dir, &who, id, &approval).await?;
            if json {
                return print_json(&grant);
            }
            println!("{}", grant.id);
            eprintln!(
                "已批准 approved request #{id} as grant #{}: {}",
                grant.id,
                grant
                    .fields
                    .iter()
                    .map(|f| match &f.mask {
                        Some(m) => format!("{} ({m})", f.name),
                        None => f.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        AccessCommand::Refuse { id, user, reason } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            requests::refuse(&dir, &who, id, &reason).await?;
            println!("已拒绝 refused request #{id}: {reason}");
        }
        AccessCommand::Withdraw { id, user } => {
            let who = Principal::of_user(dir.metadata(), &user).await?;
            requests::withdraw(&dir, &who, id).await?;
            println!("已撤回 withdrew request #{id}");
        }
        AccessCommand::Revoke {
            grant,
            user,
            reason,
        } => {
            let who = optional_principal(&dir, user.as_deref()).await?;
            requests::revoke(&dir, who.as_ref(), grant, &reason).await?;
            println!("已撤销授权 revoked grant #{grant}");
        }
        AccessCommand::List {
            user,
            view,
            grants,
            overdue,
            json,
        } => {
            let who = optional_principal(&dir, user.as_deref()).await?;
            let view = parse_view(&view)?;
            if grants {
                let list = requests::list_grants(dir.metadata(), who.as_ref(), view).await?;
                if json {
                    return print_json(&list);
                }
                for g in list {
                    println!(
                        "#{}\t{}\t{} → {}{}\t{}\tuntil {}{}",
                        g.id,
                        g.resource,
                        g.provider,
                        g.unit,
                        g.user.map(|u| format!(" ({u})")).unwrap_or_default(),
                        g.purpose,
                        g.valid_until.unwrap_or_else(|| "-".into()),
                        if g.revoked_at.is_some() {
                            "\trevoked"
                        } else {
                            ""
                        }
                    );
                }
            } else {
                let list =
                    requests::list_requests(dir.metadata(), who.as_ref(), view, overdue).await?;
                if json {
                    return print_json(&list);
                }
                for r in list {
                    println!(
                        "#{}\t{}\t{} {}\t{} → {}\t{}\tdue {}{}",
                        r.id,
                        r.state,
                        r.resource,
                        r.resource_name,
                        r.requester,
                        r.provider,
                        r.purpose,
                        r.answer_due,
                        if r.overdue { "\t逾期 OVERDUE" } else { "" }
                    );
                }
            }
        }
        AccessCommand::Decide {
            user,
            resource,
            purpose,
        } => {
            let policy = tongchou_access::Policy::open(dir.clone()).await?;
            print_json(&policy.decide(&user, &resource, &purpose).await?)?;
        }
        AccessCommand::Policy {
            resource,
            user,
            min_leader_level,
        } => {
            let who = optional_principal(&dir, user.as_deref()).await?;
            let level = match min_leader_level.as_str() {
                "none" => None,
                n => Some(n.parse().with_context(|| {
                    format!("--min-leader-level takes 1–10 or none, not '{n}'")
                })?),
            };
            requests::set_min_leader_level(&dir, who.as_ref(), &resource, level).await?;
            println!("已设置 set: resource {resource} min leader level {min_leader_level}");
        }
        AccessCommand::Purposes { command } => match command {
            None => {
                for p in requests::purposes(dir.metadata()).await? {
                    println!("{}\t{}\t{}", p.code, p.label, p.label_en);
                }
            }
            Some(PurposeCommand::Add {
                code,
                label,
                label_en,
            }) => {
                let purpose = Purpose {
                    code,
                    label,
                    label_en,
                };
                requests::add_purpose(&dir, None, &purpose).await?;
                println!("已添加用途 added purpose {}", purpose.code);
            }
        },
        AccessCommand::Calendar { day, kind } => {
            let date = tongchou_access::clock::parse_date(&day)?;
            tongchou_access::clock::set_day(dir.metadata(), date, &kind).await?;
            println!("{date}: {kind}");
        }
        AccessCommand::Events { n, json } => {
            let events = tongchou_access::events::recent(dir.metadata(), n).await?;
            if json {
                return print_json(&events);
            }
            for e in events.iter().rev() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.at, e.actor, e.action, e.target, e.detail
                );
            }
        }
    }
    Ok(())
}
