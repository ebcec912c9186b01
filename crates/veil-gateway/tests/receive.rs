//! The gateway against real senders: dcmtk's `echoscu` and `storescu` (Debian `dcmtk`, installed
//! by scripts/test.sh) send real files to a gateway served in this process. Checks that listed
//! senders are accepted and others refused at association, and that every instance storescu
//! was told is stored is in the spool, sealed, with the data set it sent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dicom_object::OpenFileOptions;
use veil_gateway::{serve, GatewayConfig, Spool, Stop};
use veil_keys::Key;

fn testdata(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{rel} missing: run scripts/fetch-testdata.sh"
    );
    None
}

fn have_dcmtk() -> bool {
    let ok = Command::new("storescu").arg("--version").output().is_ok();
    assert!(
        ok || std::env::var("CI").as_deref() != Ok("true"),
        "dcmtk missing (scripts/test.sh installs it)"
    );
    ok
}

struct Running {
    port: u16,
    stop: Stop,
    spool: Arc<Spool>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let text = "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\naddress = \"127.0.0.1\"\n\n[spool]\ndir = \"spool\"\n";
    let config = GatewayConfig::parse(text, "gateway.toml", dir.path()).unwrap();
    let spool = Arc::new(Spool::open(&config.spool_dir, &Key::generate()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Stop::default();
    let (c, s, st) = (Arc::new(config), spool.clone(), stop.clone());
    std::thread::spawn(move || serve(c, s, listener, st).unwrap());
    Running {
        port,
        stop,
        spool,
        _dir: dir,
    }
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn listed_senders_are_accepted_and_others_refused() {
    if !have_dcmtk() {
        return;
    }
    let g = start();
    let port = g.port.to_string();
    let echo =
        |aet: &str, aec: &str| run("echoscu", &["-aet", aet, "-aec", aec, "127.0.0.1", &port]);
    assert!(echo("SENDER", "VEIL"), "a listed sender's C-ECHO failed");
    assert!(
        !echo("INTRUDER", "VEIL"),
        "an unlisted AE title was accepted"
    );
    assert!(
        !echo("SENDER", "NOT_VEIL"),
        "a wrong called AE title was accepted"
    );
    assert!(g.spool.list().unwrap().is_empty());
}

#[test]
fn stored_instances_are_spooled_sealed_with_the_data_set_sent() {
    if !have_dcmtk() {
        return;
    }
    let files: Vec<PathBuf> = [
        "pydicom/CT_small.dcm",
        "pydicom/MR_small.dcm",
        "pydicom/SC_jpeg_no_color_transform.dcm",
        "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
    ]
    .iter()
    .filter_map(|r| testdata(r))
    .collect();
    if files.len() < 4 {
        return;
    }
    let g = start();
    let port = g.port.to_string();
    // storescu proposes uncompressed syntaxes unless told which compressed one to add: the
    // JPEG baseline file goes on its own association, in JPEG (-xy).
    let send = |extra: &[&str], files: &[PathBuf]| {
        let mut args = vec!["-aet", "SENDER", "-aec", "VEIL"];
        args.extend_from_slice(extra);
        args.extend(["127.0.0.1", port.as_str()]);
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        run("storescu", &args)
    };
    let (jpeg, plain): (Vec<PathBuf>, Vec<PathBuf>) = files
        .iter()
        .cloned()
        .partition(|p| p.to_string_lossy().contains("jpeg"));
    assert!(send(&[], &plain), "storescu reported a failure");
    assert!(send(&["-xy"], &jpeg), "storescu reported a failure (JPEG)");
    let spooled = g.spool.list().unwrap();
    assert_eq!(
        spooled.len(),
        files.len(),
        "not every stored instance is in the spool"
    );

    // Sealed: no spooled file holds the patient's name in clear.
    for (p, f) in spooled.iter().zip(&files) {
        let on_disk = std::fs::read(p).unwrap();
        let name = OpenFileOptions::new().open_file(f).unwrap();
        let name = name
            .get(dicom_dictionary_std::tags::PATIENT_NAME)
            .and_then(|e| e.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string();
        if name.len() >= 4 {
            assert!(
                !on_disk.windows(name.len()).any(|w| w == name.as_bytes()),
                "a spooled file holds a patient name in clear"
            );
        }
    }
    // The data set each sender sent, instance by instance.
    let mut received = Vec::new();
    for p in &spooled {
        let bytes = g.spool.read(p).unwrap();
        let obj = OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(&bytes[..])
            .expect("a spooled instance is a Part 10 file");
        received.push(obj);
    }
    for f in &files {
        let original = OpenFileOptions::new().open_file(f).unwrap();
        let uid = original.meta().media_storage_sop_instance_uid().to_string();
        let got = received
            .iter()
            .find(|r| r.meta().media_storage_sop_instance_uid() == uid)
            .unwrap_or_else(|| panic!("{} not received", f.display()));
        for el in original.iter() {
            let tag = el.header().tag;
            // storescu does not send Data Set Trailing Padding (it has no meaning).
            if tag == dicom_core::Tag(0xFFFC, 0xFFFC) {
                continue;
            }
            let theirs = got
                .get(tag)
                .unwrap_or_else(|| panic!("{}: {tag} lost", f.display()));
            assert_eq!(
                theirs.value().to_bytes().ok(),
                el.value().to_bytes().ok(),
                "{}: {tag} differs",
                f.display()
            );
        }
    }

    // Sent again (a retry after a lost response): stored once.
    assert!(send(&[], &plain) && send(&["-xy"], &jpeg));
    assert_eq!(g.spool.list().unwrap().len(), files.len());
}

/// A sender that drops the connection in the middle of a data set leaves nothing in the spool,
/// not even a part file: a data set is spooled only when its last fragment has arrived.
#[test]
fn a_transfer_cut_short_leaves_nothing() {
    use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
    let Some(ct) = testdata("pydicom/CT_small.dcm") else {
        return;
    };
    let g = start();
    let obj = OpenFileOptions::new().open_file(&ct).unwrap();
    let class = obj
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches('\0')
        .to_string();
    let instance = obj
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string();
    let mut assoc = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("SENDER")
        .called_ae_title("VEIL")
        .with_presentation_context(class.as_str(), vec!["1.2.840.10008.1.2.1"])
        .establish(("127.0.0.1", g.port))
        .expect("association");
    let pc = assoc.presentation_contexts()[0].id;
    // A C-STORE request, then half of a data set, then the connection goes.
    let mut command = dicom_object::InMemDicomObject::new_empty();
    let put = |o: &mut dicom_object::InMemDicomObject, tag, vr, v: dicom_core::PrimitiveValue| {
        o.put(dicom_core::DataElement::new(tag, vr, v));
    };
    use dicom_core::{PrimitiveValue as V, VR};
    use dicom_dictionary_std::tags as t;
    put(
        &mut command,
        t::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        V::from(class.as_str()),
    );
    put(&mut command, t::COMMAND_FIELD, VR::US, V::from(1u16));
    put(&mut command, t::MESSAGE_ID, VR::US, V::from(1u16));
    put(&mut command, t::PRIORITY, VR::US, V::from(0u16));
    put(
        &mut command,
        t::COMMAND_DATA_SET_TYPE,
        VR::US,
        V::from(0u16),
    );
    put(
        &mut command,
        t::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        V::from(instance.as_str()),
    );
    let mut bytes = Vec::new();
    command
        .write_dataset_with_ts(
            &mut bytes,
            &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
    let pdv = |value_type, is_last, data| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last,
            data,
        }],
    };
    assoc
        .send(&pdv(PDataValueType::Command, true, bytes))
        .unwrap();
    assoc
        .send(&pdv(PDataValueType::Data, false, vec![0u8; 4096]))
        .unwrap();
    let _ = assoc.inner_stream().shutdown(std::net::Shutdown::Both);
    drop(assoc);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        g.spool.list().unwrap().is_empty(),
        "a cut transfer was spooled"
    );
    let tmp = g._dir.path().join("spool/tmp");
    assert!(
        std::fs::read_dir(tmp).unwrap().next().is_none(),
        "a cut transfer left a part file"
    );
}
