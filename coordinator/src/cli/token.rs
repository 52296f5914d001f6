//! `meshrun token`: join tokens for new nodes. `create` prints the token line and nothing else,
//! so `T=$(meshrun token create --node-type execution)` captures it; `list` shows the stored
//! tokens (never their secrets); `revoke ID` stops one from being accepted.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;

/// `meshrun token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print it (only the token, on one line).
    Create {
        /// The node type a node joining with it becomes: execution or hop.
        #[arg(long)]
        node_type: String,
        /// How long it is accepted: seconds, or a number with s, m, h or d (at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many nodes may join with it.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// A label shown by `token list`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List join tokens.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a join token by id.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
    },
}

/// Runs a `token` subcommand against the API at `url`.
pub async fn run(url: &str, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    match cmd {
        TokenCommand::Create {
            node_type,
            ttl,
            uses,
            name,
        } => {
            let made = client
                .post_json(
                    "/api/v2/join_tokens/",
                    &json!({"node_type": node_type, "ttl": ttl, "uses": uses, "name": name}),
                )
                .await?;
            let token = made
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow::anyhow!("the coordinator's answer holds no token"))?;
            println!("{token}");
        }
        TokenCommand::List { json } => {
            let page = client.get("/api/v2/join_tokens/").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", table(&page));
            }
        }
        TokenCommand::Revoke { id } => {
            client.delete(&format!("/api/v2/join_tokens/{id}/")).await?;
            eprintln!("join token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The token list as a table.
pub fn table(page: &Value) -> String {
    let mut out = format!(
        "{:<5} {:<10} {:<9} {:<28} {:<10} {}\n",
        "ID", "TYPE", "USES", "EXPIRES", "STATE", "NAME"
    );
    for t in page
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let n = |k: &str| t.get(k).and_then(Value::as_i64).unwrap_or(0);
        let b = |k: &str| t.get(k).and_then(Value::as_bool).unwrap_or(false);
        let state = if b("revoked") {
            "revoked"
        } else if b("expired") {
            "expired"
        } else if n("uses_left") == 0 {
            "used"
        } else {
            "usable"
        };
        out.push_str(&format!(
            "{:<5} {:<10} {:<9} {:<28} {:<10} {}\n",
            n("id"),
            s("node_type"),
            format!("{}/{}", n("uses_left"), n("uses")),
            s("expires_at"),
            state,
            s("name")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_tokens_state() {
        let page = json!({"results": [
            {"id": 1, "node_type": "hop", "uses_left": 0, "uses": 1, "expires_at": "x", "revoked": false, "expired": false, "name": "a"},
            {"id": 2, "node_type": "execution", "uses_left": 2, "uses": 3, "expires_at": "y", "revoked": true, "expired": false, "name": ""},
            {"id": 3, "node_type": "execution", "uses_left": 1, "uses": 1, "expires_at": "z", "revoked": false, "expired": false, "name": ""}
        ]});
        let t = table(&page);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("used") && lines[1].contains("0/1"), "{t}");
        assert!(
            lines[2].contains("revoked") && lines[2].contains("2/3"),
            "{t}"
        );
        assert!(lines[3].contains("usable"), "{t}");
    }
}
