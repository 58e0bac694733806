//! `ferrymesh certs`: the mesh's own certificate authority and one
//! certificate per service, each naming the service's identity as a
//! SPIFFE-style URI (`spiffe://ferrymesh.local/ns/ferrymesh/sa/orders`), for
//! mutual TLS inside the mesh.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Flags of `ferrymesh certs`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CertsCommand {
    /// Create the CA and every service's certificate in DIR; what exists is kept.
    Init {
        /// Where the files go: ca.pem, ca.key, and SERVICE.pem and SERVICE.key per service.
        dir: PathBuf,
        #[command(flatten)]
        naming: Naming,
        /// Replace everything, the CA included (every service must then be given the new files).
        #[arg(long)]
        force: bool,
    },
    /// Issue new certificates for the named services from the CA in DIR
    /// (rotation: services reload them from disk).
    Issue {
        /// The directory `certs init` made.
        dir: PathBuf,
        /// The services, e.g. orders payments.
        #[arg(required = true, value_parser = clap::builder::PossibleValuesParser::new(identities()))]
        services: Vec<String>,
        #[command(flatten)]
        naming: Naming,
    },
}

/// How identities and lifetimes are written.
#[derive(Debug, Clone, clap::Args)]
struct Naming {
    /// The SPIFFE trust domain.
    #[arg(long, value_name = "DOMAIN", default_value = "ferrymesh.local")]
    trust_domain: String,
    /// The Kubernetes namespace in identities and DNS names.
    #[arg(long, value_name = "NAME", default_value = "ferrymesh")]
    namespace: String,
    /// How long a service certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 90, value_parser = clap::value_parser!(u16).range(1..=825))]
    days: u16,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
enum CertsError {
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot read {0}: {1}; run `ferrymesh certs init {2}` first")]
    Read(PathBuf, std::io::Error, String),
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0:?} is not a usable name in a certificate: {1}")]
    Name(String, rcgen::Error),
}

pub(crate) fn run(args: CertsArgs) -> ExitCode {
    let result = match args.command {
        CertsCommand::Init { dir, naming, force } => init(&dir, &naming, force),
        CertsCommand::Issue {
            dir,
            services,
            naming,
        } => issue(&dir, &naming, &services),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferrymesh: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Who gets a certificate: every service, the operator (people and tools
/// such as grpcurl and `ferrymesh keys`, which may call every method), and
/// the PostgreSQL server.
pub(crate) fn identities() -> Vec<&'static str> {
    let mut all = crate::mesh::names();
    all.push(kit::authz::OPERATOR);
    // The database server's certificate, for PostgreSQL over TLS
    // (`sslmode=verify-full` with the mesh's CA).
    all.push(DATABASE);
    all
}

/// The identity of the mesh's PostgreSQL server.
const DATABASE: &str = "postgres";

/// `certs init DIR` with the default names, as `up --tls` runs it: what
/// exists is kept.
pub(crate) fn init_default(dir: &Path) -> Result<(), String> {
    let naming = Naming {
        trust_domain: "ferrymesh.local".into(),
        namespace: "ferrymesh".into(),
        days: 90,
    };
    init(dir, &naming, false).map_err(|e| e.to_string())
}

/// The identity a service's certificate names.
pub(crate) fn spiffe_id(trust_domain: &str, namespace: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service}")
}

/// The CA's parameters; the same every time, so a CA read back from disk
/// signs with the subject its certificate carries.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "ferrymesh");
    name.push(DnType::CommonName, "ferrymesh mesh CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    params
}

/// A service's certificate: its SPIFFE identity, the names it is reached
/// by locally and in the cluster, for serving and for calling.
fn service_params(naming: &Naming, service: &str) -> Result<CertificateParams, CertsError> {
    let ns = &naming.namespace;
    let uri = spiffe_id(&naming.trust_domain, ns, service);
    let dns = [
        "localhost".to_string(),
        service.to_string(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ];
    let mut sans = vec![SanType::URI(
        uri.as_str()
            .try_into()
            .map_err(|e| CertsError::Name(uri.clone(), e))?,
    )];
    for name in dns {
        sans.push(SanType::DnsName(
            name.as_str()
                .try_into()
                .map_err(|e| CertsError::Name(name.clone(), e))?,
        ));
    }
    sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "ferrymesh");
    name.push(DnType::CommonName, service);
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(naming.days));
    Ok(params)
}

/// Writes a file; keys are readable by their owner only.
fn write(path: &Path, contents: &str, secret: bool) -> Result<(), CertsError> {
    let fail = |e| CertsError::Write(path.to_path_buf(), e);
    // Written beside, then renamed: a service reloading never reads half a file.
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    let mut file = options.open(&partial).map_err(fail)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&partial, path).map_err(fail)
}

fn read(path: &Path, dir: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path)
        .map_err(|e| CertsError::Read(path.to_path_buf(), e, dir.display().to_string()))
}

/// Issues `service`'s certificate from `issuer` into `dir`.
fn issue_one(
    dir: &Path,
    naming: &Naming,
    issuer: &Issuer<'_, KeyPair>,
    service: &str,
) -> Result<(), CertsError> {
    let key = KeyPair::generate()?;
    let cert = service_params(naming, service)?.signed_by(&key, issuer)?;
    write(&dir.join(format!("{service}.key")), &key.serialize_pem(), true)?;
    write(&dir.join(format!("{service}.pem")), &cert.pem(), false)?;
    println!(
        "{service}: {} ({})",
        dir.join(format!("{service}.pem")).display(),
        spiffe_id(&naming.trust_domain, &naming.namespace, service)
    );
    Ok(())
}

fn init(dir: &Path, naming: &Naming, force: bool) -> Result<(), CertsError> {
    std::fs::create_dir_all(dir).map_err(|e| CertsError::Write(dir.to_path_buf(), e))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let fresh_ca = force || !ca_pem.exists() || !ca_key.exists();
    let key = if fresh_ca {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write(&ca_key, &key.serialize_pem(), true)?;
        write(&ca_pem, &cert.pem(), false)?;
        println!("ca: {} (new)", ca_pem.display());
        key
    } else {
        println!("ca: {} (kept)", ca_pem.display());
        KeyPair::from_pem(&read(&ca_key, dir)?)?
    };
    let issuer = Issuer::new(ca_params(), key);
    for service in identities() {
        let present =
            dir.join(format!("{service}.pem")).exists() && dir.join(format!("{service}.key")).exists();
        // A new CA invalidates every certificate the old one signed.
        if present && !fresh_ca {
            println!("{service}: kept");
            continue;
        }
        issue_one(dir, naming, &issuer, service)?;
    }
    Ok(())
}

fn issue(dir: &Path, naming: &Naming, services: &[String]) -> Result<(), CertsError> {
    let key = KeyPair::from_pem(&read(&dir.join("ca.key"), dir)?)?;
    // The CA certificate must be there too: services trust it, not the key.
    read(&dir.join("ca.pem"), dir)?;
    let issuer = Issuer::new(ca_params(), key);
    for service in services {
        issue_one(dir, naming, &issuer, service)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            trust_domain: "ferrymesh.local".into(),
            namespace: "ferrymesh".into(),
            days: 90,
        }
    }

    fn der(path: &Path) -> Vec<u8> {
        pem::parse(std::fs::read(path).unwrap()).unwrap().into_contents()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn init_makes_a_ca_and_a_certificate_naming_each_service() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &naming(), false).unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join("ca.pem"))
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        for service in crate::mesh::names() {
            let cert = der(&dir.path().join(format!("{service}.pem")));
            let id = format!("spiffe://ferrymesh.local/ns/ferrymesh/sa/{service}");
            assert!(contains(&cert, &id), "{service}'s certificate names {id}");
            assert!(contains(&cert, &format!("{service}.ferrymesh.svc.cluster.local")));
            assert!(contains(&cert, "ferrymesh mesh CA"), "issued by the mesh CA");
            // No other service's identity.
            let other = if service == "orders" { "catalog" } else { "orders" };
            assert!(!contains(&cert, &format!("/sa/{other}")));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.path().join(format!("{service}.key")))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{service}.key is its owner's alone");
            }
        }
    }

    #[test]
    fn init_keeps_what_exists_and_issue_replaces_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &naming(), false).unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        let (ca, orders, catalog) = (read("ca.pem"), read("orders.pem"), read("catalog.pem"));

        init(dir.path(), &naming(), false).unwrap();
        assert_eq!((read("ca.pem"), read("orders.pem")), (ca.clone(), orders.clone()));

        issue(dir.path(), &naming(), &["orders".to_string()]).unwrap();
        assert_ne!(read("orders.pem"), orders, "a new certificate for orders");
        assert_eq!(read("catalog.pem"), catalog);
        assert_eq!(read("ca.pem"), ca, "signed by the same CA");
        assert!(!dir.path().join("orders.partial").exists());

        init(dir.path(), &naming(), true).unwrap();
        assert_ne!(read("ca.pem"), ca, "--force makes a new CA");
        assert_ne!(read("catalog.pem"), catalog, "and reissues everything under it");
    }

    #[test]
    fn issue_without_a_ca_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let error = issue(dir.path(), &naming(), &["orders".to_string()]).unwrap_err();
        assert!(error.to_string().contains("ferrymesh certs init"), "{error}");
    }
}
