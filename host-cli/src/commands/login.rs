//! `berth login` / `berth logout`: registry credentials, verified against
//! the registry before they are saved in `$BERTH_HOME/auth.json` (0600).

use crate::registry::auth::{CredentialStore, Credentials};
use crate::registry::RegistryClient;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Registry host[:port] (default: docker.io)
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: docker.io)
    server: Option<String>,
}

fn registry_key(server: Option<&str>) -> Result<String> {
    Ok(crate::registry::auth::registry_key(server)?)
}

fn read_line_no_echo(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    #[cfg(unix)]
    let saved = {
        let fd = std::os::fd::AsFd::as_fd(&stdin);
        let saved = nix::sys::termios::tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet
                .local_flags
                .remove(nix::sys::termios::LocalFlags::ECHO);
            let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &quiet);
        }
        saved
    };
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    #[cfg(unix)]
    if let Some(t) = &saved {
        let fd = std::os::fd::AsFd::as_fd(&stdin);
        let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, t);
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(a: &LoginArgs) -> Result<i32> {
    let key = registry_key(a.server.as_deref())?;
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match &a.username {
        Some(u) => u.clone(),
        None if interactive && !a.password_stdin => {
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            let mut l = String::new();
            std::io::stdin().lock().read_line(&mut l)?;
            l.trim().to_string()
        }
        None => bail!("Must provide --username with --password-stdin or a non-interactive stdin"),
    };
    let password = if let Some(p) = &a.password {
        p.clone()
    } else if a.password_stdin {
        let mut p = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut p)
            .context("reading the password from stdin")?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if interactive {
        read_line_no_echo("Password: ")?
    } else {
        bail!("cannot prompt for a password: stdin is not a terminal (use --password-stdin)");
    };
    if username.is_empty() || password.is_empty() {
        bail!("username and password must not be empty");
    }
    if username.contains(':') {
        bail!("username must not contain ':'");
    }
    let creds = Credentials { username, password };
    // An anonymous registry accepts anything; a scope-less token request
    // or the basic challenge checks the credentials where there is auth.
    RegistryClient::connect_with(&key, Vec::new(), Some(creds.clone()))
        .and_then(|c| c.verify())
        .with_context(|| format!("login to {key} failed"))?;
    let store = CredentialStore::open();
    store.set(&key, &creds)?;
    // docker's first line, word for word; berth has no credential helpers.
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.\n\
         The file is readable by its owner only (mode 0600).\n",
        store.path().display()
    );
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(a: &LogoutArgs) -> Result<i32> {
    let key = registry_key(a.server.as_deref())?;
    // docker says this whether or not it held credentials for the key.
    CredentialStore::open().remove(&key)?;
    println!("Removing login credentials for {key}");
    Ok(0)
}
