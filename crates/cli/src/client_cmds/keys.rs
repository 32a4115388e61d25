//! `fugue keys`: encrypted backups of the account's private identity keys on its home server
//! (PKCS#8 with PBES2 under a backup passphrase), and restoring them into the key store.

use clap::Subcommand;

use fugue_client::IdentityKey;
use fugue_proto::api::keymaterial::EncryptedPkm;

use super::{ClientOpts, current, e, open_store, restore_session, secret};
use crate::terminal::out;

/// PBES2 (RFC 8018): the scheme of PKCS#8 `EncryptedPrivateKeyInfo`, used for key backups.
const PBES2_OID: &str = "1.2.840.113549.1.5.13";

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Encrypt your identity keys with a passphrase and upload them.
    Backup,
    /// Download your key backups, decrypt them and put them into the key store.
    Restore,
}

pub async fn run(opts: ClientOpts, cmd: KeysCmd) -> Result<(), String> {
    let mut store = open_store(&opts)?;
    let (session, pass) = restore_session(&store)?;
    match cmd {
        KeysCmd::Backup => {
            let backup_pass = secret("FUGUE_BACKUP_PASSPHRASE", "Backup passphrase: ")?;
            let account = current(&store)?;
            let mut items = vec![(session.current_serial().map_err(e)?, session.key().clone())];
            for old in &account.old_keys {
                items.push((old.serial, old.key(pass.as_deref()).map_err(e)?));
            }
            let existing = session.key_material(&[]).await.map_err(e)?;
            let mut upload = Vec::new();
            for (serial, key) in items {
                if existing.iter().any(|m| m.serial == serial) {
                    continue;
                }
                let key_data = key.to_encrypted_pem(&backup_pass).map_err(e)?.to_string();
                upload.push(EncryptedPkm {
                    key_data,
                    serial,
                    encryption_algorithms: vec![PBES2_OID.to_owned()],
                });
            }
            let n = upload.len();
            if n > 0 {
                session.upload_key_material(upload).await.map_err(e)?;
            }
            out!(
                "backed up {n} key(s); {} were already on the server",
                existing.len()
            );
        }
        KeysCmd::Restore => {
            let backup_pass = secret("FUGUE_BACKUP_PASSPHRASE", "Backup passphrase: ")?;
            let material = session.key_material(&[]).await.map_err(e)?;
            let current_serial = session.current_serial().map_err(e)?;
            let mut account = current(&store)?.clone();
            let mut restored = 0;
            for m in material {
                let key = IdentityKey::from_encrypted_pem(&m.key_data, &backup_pass).map_err(e)?;
                if m.serial == current_serial
                    || account.old_keys.iter().any(|o| o.serial == m.serial)
                {
                    continue;
                }
                let key_pem = match &pass {
                    Some(p) => key.to_encrypted_pem(p).map_err(e)?.to_string(),
                    None => key.to_pkcs8_pem().map_err(e)?.to_string(),
                };
                account.old_keys.push(fugue_client::OldKey {
                    serial: m.serial,
                    key_pem,
                });
                restored += 1;
            }
            store.upsert(account).map_err(e)?;
            store.save().map_err(e)?;
            out!("restored {restored} key(s) into {}", store.path().display());
        }
    }
    Ok(())
}
