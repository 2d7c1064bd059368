//! `edge man`: the man page, edge(1). The flags come from the clap
//! definitions of [`Cli`] (so the page and `--help` cannot disagree); the
//! sections clap knows nothing of (commands, environment, signals, files)
//! are written here.

use std::io::{self, Write};

use clap::CommandFactory as _;
use clap_mangen::Man;
use roff::{Roff, bold, italic, roman};

use crate::cli::Cli;

/// Writes the roff source of edge(1) to `w`.
pub fn render(w: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    let man = Man::new(command.clone()).manual("edge manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    // clap_mangen's subcommand section points to a page per command
    // (edge-stats(1)); one page is simpler to ship, so each command's
    // options are a section of this one.
    let commands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .collect();
    if !commands.is_empty() {
        let mut roff = Roff::new();
        roff.control("SH", ["COMMANDS"]);
        for sub in &commands {
            roff.control("TP", []);
            roff.text([bold(format!("edge {}", sub.get_name()))]);
            if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
                roff.text([roman(about.to_string())]);
            }
        }
        roff.to_writer(w)?;
        for sub in commands {
            let heading = format!("{} OPTIONS", sub.get_name().to_uppercase());
            let mut sub = sub.clone().name(format!("edge {}", sub.get_name()));
            // Built on its own, it has its --help flag, which then gets the
            // heading like the rest.
            sub.build();
            let sub = sub.mut_args(|arg| arg.help_heading(heading.clone()));
            Man::new(sub).render_options_section(w)?;
        }
    }
    sections().to_writer(w)?;
    man.render_version_section(w)
}

/// ENVIRONMENT, SIGNALS, FILES, SEE ALSO.
fn sections() -> Roff {
    let mut roff = Roff::new();
    let item = |roff: &mut Roff, term: &str, text: &str| {
        roff.control("TP", []);
        roff.text([bold(term)]);
        roff.text([roman(text)]);
    };
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every flag can also be set through the EDGE_ variable named after it (above).",
    )]);
    item(
        &mut roff,
        "EDGE_LOG",
        "Log verbosity and filters, e.g. EDGE_LOG=debug or EDGE_LOG=warn,access=info \
         (RUST_LOG if unset). Access lines use the `access` target.",
    );
    roff.control("SH", ["SIGNALS"]);
    item(
        &mut roff,
        "SIGTERM, SIGINT",
        "Stop accepting, let in-flight requests finish (up to server.shutdown_grace), exit.",
    );
    item(
        &mut roff,
        "SIGHUP",
        "Reload the configuration file (and the TLS certificates).",
    );
    item(
        &mut roff,
        "SIGUSR1",
        "Reopen the access log file at its path, for log rotation without copytruncate. \
         If it cannot be opened, lines keep going to the old file and an error is logged.",
    );
    item(
        &mut roff,
        "SIGUSR2",
        "Binary upgrade: start the binary at the same path with the same arguments, \
         hand it the listening sockets, then drain and exit.",
    );
    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "/etc/edge/edge.toml",
        "The configuration file of the packaged service; every key is documented in it.",
    );
    item(
        &mut roff,
        "/var/lib/edge",
        "The packaged service's data directory: the disk cache and durable metadata.",
    );
    item(
        &mut roff,
        "/var/log/edge",
        "Where the packaged service may write its access log (access_log).",
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        italic("systemd.service"),
        roman("(5), "),
        italic("systemd.socket"),
        roman("(5), "),
        italic("logrotate"),
        roman("(8); docs/operations.md in the source."),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        let mut out = Vec::new();
        render(&mut out).expect("render");
        String::from_utf8(out).expect("roff is UTF-8")
    }

    /// roff writes `-` as `\-`.
    fn roff_flag(long: &str) -> String {
        format!("--{long}").replace('-', "\\-")
    }

    #[test]
    fn the_page_mentions_every_long_flag_of_every_visible_command() {
        let page = page();
        let command = Cli::command();
        let mut commands = vec![&command];
        commands.extend(command.get_subcommands().filter(|c| !c.is_hide_set()));
        let mut checked = 0;
        for cmd in commands {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let Some(long) = arg.get_long() else { continue };
                assert!(
                    page.contains(&roff_flag(long)),
                    "--{long} of `{}` missing from the page:\n{page}",
                    cmd.get_name()
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "only {checked} flags found: clap's API changed?"
        );
    }

    #[test]
    fn the_page_has_the_sections_clap_does_not_write() {
        let page = page();
        assert!(page.contains("\n.TH edge 1 "), "{page}");
        for section in [
            "OPTIONS",
            "COMMANDS",
            "\"STATS OPTIONS\"",
            "SIGNALS",
            "FILES",
        ] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "{section}:\n{page}"
            );
        }
        assert!(page.contains("EDGE_ORIGIN"), "flags' variables: {page}");
        assert!(page.contains("SIGUSR1"), "{page}");
        assert!(
            !page.contains("Print the man page"),
            "the hidden command stays hidden"
        );
        assert!(!page.contains("edge\\-stats(1)"), "no page of its own");
    }
}
