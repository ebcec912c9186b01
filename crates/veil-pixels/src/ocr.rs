//! Tesseract through its C API, loaded at run time.
//!
//! Why not a binding crate (leptess, tesseract): both generate bindings with bindgen at build
//! time, which makes libclang, libtesseract-dev and libleptonica-dev build requirements of the
//! whole `veil` binary. Loading `libtesseract.so.5` with `dlopen` keeps the build free of them:
//! Veil builds and runs on machines without Tesseract, and the pixel stage fails closed (holds
//! flagged files back with a reason naming the package to install) when the library is missing.
//! The C API used here is a dozen stable functions (tesseract/capi.h, Tesseract 4 and 5).

use std::ffi::{c_char, c_float, c_int, c_uchar, c_void, CStr, CString};
use std::sync::OnceLock;

use libloading::Library;

/// A word Tesseract found, in the coordinates of the image it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    /// 0–100.
    pub confidence: f32,
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    /// Index of the text line the word belongs to (within one recognition).
    pub line: u32,
}

type Create = unsafe extern "C" fn() -> *mut c_void;
type Delete = unsafe extern "C" fn(*mut c_void);
type Init3 = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type SetPsm = unsafe extern "C" fn(*mut c_void, c_int);
type SetVariable = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type SetImage = unsafe extern "C" fn(*mut c_void, *const c_uchar, c_int, c_int, c_int, c_int);
type SetResolution = unsafe extern "C" fn(*mut c_void, c_int);
type Recognize = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type GetIterator = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type IterDelete = unsafe extern "C" fn(*mut c_void);
type IterNext = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type IterText = unsafe extern "C" fn(*const c_void, c_int) -> *mut c_char;
type IterConf = unsafe extern "C" fn(*const c_void, c_int) -> c_float;
type IterPage = unsafe extern "C" fn(*const c_void) -> *const c_void;
type PageBox = unsafe extern "C" fn(
    *const c_void,
    c_int,
    *mut c_int,
    *mut c_int,
    *mut c_int,
    *mut c_int,
) -> c_int;
type PageIsAtBeginningOf = unsafe extern "C" fn(*const c_void, c_int) -> c_int;
type DeleteText = unsafe extern "C" fn(*const c_char);
type Clear = unsafe extern "C" fn(*mut c_void);

const RIL_TEXTLINE: c_int = 2;
const RIL_WORD: c_int = 3;
/// Sparse text: find as much text as possible in no particular order (burned-in labels are
/// scattered over the frame, not laid out as a page).
const PSM_SPARSE_TEXT: c_int = 11;

struct Api {
    _lib: Library,
    create: Create,
    delete: Delete,
    init3: Init3,
    set_psm: SetPsm,
    set_variable: SetVariable,
    set_image: SetImage,
    set_resolution: SetResolution,
    recognize: Recognize,
    get_iterator: GetIterator,
    iter_delete: IterDelete,
    iter_next: IterNext,
    iter_text: IterText,
    iter_conf: IterConf,
    iter_page: IterPage,
    page_box: PageBox,
    page_is_at_beginning_of: PageIsAtBeginningOf,
    delete_text: DeleteText,
    clear: Clear,
}

/// Library names tried in order (override with `VEIL_TESSERACT_LIB`).
const LIBRARY_NAMES: &[&str] = &["libtesseract.so.5", "libtesseract.so.4", "libtesseract.so"];

fn load_api() -> Result<Api, String> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(p) = std::env::var("VEIL_TESSERACT_LIB") {
        names.push(p);
    }
    names.extend(LIBRARY_NAMES.iter().map(|s| s.to_string()));
    let mut last = String::new();
    for name in &names {
        // SAFETY: loading a shared library runs its initialisers; libtesseract's are benign.
        match unsafe { Library::new(name) } {
            Ok(lib) => return bind(lib).map_err(|e| format!("{name}: {e}")),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "the Tesseract OCR library could not be loaded ({last}); install the Debian packages tesseract-ocr and tesseract-ocr-eng (scripts/setup.d/pixels.sh) or set VEIL_TESSERACT_LIB"
    ))
}

fn bind(lib: Library) -> Result<Api, libloading::Error> {
    // SAFETY: the symbol types match tesseract/capi.h of Tesseract 4 and 5.
    unsafe {
        Ok(Api {
            create: *lib.get::<Create>(b"TessBaseAPICreate\0")?,
            delete: *lib.get::<Delete>(b"TessBaseAPIDelete\0")?,
            init3: *lib.get::<Init3>(b"TessBaseAPIInit3\0")?,
            set_psm: *lib.get::<SetPsm>(b"TessBaseAPISetPageSegMode\0")?,
            set_variable: *lib.get::<SetVariable>(b"TessBaseAPISetVariable\0")?,
            set_image: *lib.get::<SetImage>(b"TessBaseAPISetImage\0")?,
            set_resolution: *lib.get::<SetResolution>(b"TessBaseAPISetSourceResolution\0")?,
            recognize: *lib.get::<Recognize>(b"TessBaseAPIRecognize\0")?,
            get_iterator: *lib.get::<GetIterator>(b"TessBaseAPIGetIterator\0")?,
            iter_delete: *lib.get::<IterDelete>(b"TessResultIteratorDelete\0")?,
            iter_next: *lib.get::<IterNext>(b"TessResultIteratorNext\0")?,
            iter_text: *lib.get::<IterText>(b"TessResultIteratorGetUTF8Text\0")?,
            iter_conf: *lib.get::<IterConf>(b"TessResultIteratorConfidence\0")?,
            iter_page: *lib.get::<IterPage>(b"TessResultIteratorGetPageIteratorConst\0")?,
            page_box: *lib.get::<PageBox>(b"TessPageIteratorBoundingBox\0")?,
            page_is_at_beginning_of: *lib
                .get::<PageIsAtBeginningOf>(b"TessPageIteratorIsAtBeginningOf\0")?,
            delete_text: *lib.get::<DeleteText>(b"TessDeleteText\0")?,
            clear: *lib.get::<Clear>(b"TessBaseAPIClear\0")?,
            _lib: lib,
        })
    }
}

/// The environment setting front ends give Tesseract's OpenMP runtime before any thread starts
/// (name, value): one OCR thread per worker.
pub const OMP_THREAD_LIMIT: (&str, &str) = ("OMP_THREAD_LIMIT", "1");

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    // Tesseract's OpenMP threads would fight Veil's own workers (one file per core): a front
    // end sets OMP_THREAD_LIMIT=1 at start, while it has one thread ([`OMP_THREAD_LIMIT`]);
    // changing the environment here, on a worker thread, would race other threads' reads.
    API.get_or_init(load_api).as_ref().map_err(Clone::clone)
}

/// Is the OCR engine usable here? (`Err` names what to install.)
pub fn available() -> Result<(), crate::PixelError> {
    api().map(|_| ()).map_err(crate::PixelError::Ocr)
}

/// One initialised Tesseract engine. Not shareable between threads: each worker owns one.
pub struct Engine {
    api: &'static Api,
    handle: *mut c_void,
}

impl Engine {
    /// Loads the English model (a few tens of milliseconds).
    pub fn new() -> Result<Engine, String> {
        let api = api()?;
        // SAFETY: plain C API calls on a handle we own.
        unsafe {
            let handle = (api.create)();
            if handle.is_null() {
                return Err("Tesseract could not create an engine".into());
            }
            let lang = CString::new("eng").unwrap();
            let datapath = std::env::var("TESSDATA_PREFIX")
                .ok()
                .and_then(|p| CString::new(p).ok());
            let dp = datapath.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            if (api.init3)(handle, dp, lang.as_ptr()) != 0 {
                (api.delete)(handle);
                return Err("Tesseract could not load its English model (install tesseract-ocr-eng or set TESSDATA_PREFIX)".into());
            }
            (api.set_psm)(handle, PSM_SPARSE_TEXT);
            for (k, v) in [("debug_file", "/dev/null"), ("tessedit_do_invert", "1")] {
                let k = CString::new(k).unwrap();
                let v = CString::new(v).unwrap();
                (api.set_variable)(handle, k.as_ptr(), v.as_ptr());
            }
            Ok(Engine { api, handle })
        }
    }

    /// Recognises the words in an 8-bit grey image (row-major, `width` bytes per row).
    pub fn words(&mut self, grey: &[u8], width: u32, height: u32) -> Result<Vec<Word>, String> {
        if grey.len() < (width as usize) * (height as usize) || width < 3 || height < 3 {
            return Ok(Vec::new());
        }
        let api = self.api;
        let mut words = Vec::new();
        // SAFETY: the image outlives the recognition (Clear is called before returning); the
        // iterator and strings are freed with the API's own functions.
        unsafe {
            (api.set_image)(
                self.handle,
                grey.as_ptr(),
                width as c_int,
                height as c_int,
                1,
                width as c_int,
            );
            (api.set_resolution)(self.handle, 300);
            if (api.recognize)(self.handle, std::ptr::null_mut()) != 0 {
                (api.clear)(self.handle);
                return Err("Tesseract failed to recognise a frame".into());
            }
            let it = (api.get_iterator)(self.handle);
            if !it.is_null() {
                let page = (api.iter_page)(it);
                let mut line: u32 = 0;
                let mut first = true;
                loop {
                    if !first && (api.page_is_at_beginning_of)(page, RIL_TEXTLINE) != 0 {
                        line += 1;
                    }
                    first = false;
                    let (mut l, mut t, mut r, mut b) = (0, 0, 0, 0);
                    let has_box = (api.page_box)(page, RIL_WORD, &mut l, &mut t, &mut r, &mut b);
                    let text_ptr = (api.iter_text)(it, RIL_WORD);
                    if has_box != 0 && !text_ptr.is_null() {
                        let text = CStr::from_ptr(text_ptr).to_string_lossy().into_owned();
                        let confidence = (api.iter_conf)(it, RIL_WORD);
                        words.push(Word {
                            text,
                            confidence,
                            left: l.max(0) as u32,
                            top: t.max(0) as u32,
                            right: r.max(0) as u32,
                            bottom: b.max(0) as u32,
                            line,
                        });
                    }
                    if !text_ptr.is_null() {
                        (api.delete_text)(text_ptr);
                    }
                    if (api.iter_next)(it, RIL_WORD) == 0 {
                        break;
                    }
                }
                (api.iter_delete)(it);
            }
            (api.clear)(self.handle);
        }
        Ok(words)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle was created by this engine and is deleted once.
        unsafe { (self.api.delete)(self.handle) }
    }
}

thread_local! {
    static ENGINE: std::cell::RefCell<Option<Engine>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's engine (created on first use and kept for the thread's life).
pub fn with_engine<T>(f: impl FnOnce(&mut Engine) -> Result<T, String>) -> Result<T, String> {
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Engine::new()?);
        }
        f(slot.as_mut().expect("engine was just created"))
    })
}
