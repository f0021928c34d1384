//! Builds Mender artifacts from fuzzer-chosen bytes.
//!
//! Every choice reads one byte of the input; an exhausted input reads 0,
//! and 0 always means "the usual thing", so an empty input gives a valid
//! one-payload artifact and each non-zero byte perturbs one decision. Tar
//! checksums and manifest digests are computed after the perturbations, so
//! the reader gets past them unless a choice breaks them on purpose.

use sha2::{Digest, Sha256};

/// Fuzzer choices: one byte per decision, 0 once exhausted.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }
    /// The next byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    /// True with probability about `n`/256 (false when exhausted).
    pub fn chance(&mut self, n: u8) -> bool {
        let b = self.byte();
        b != 0 && b <= n
    }
    /// An index below `n` (0 when exhausted).
    pub fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }
    /// `options[0]` usually; another one when the byte says so.
    pub fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        let b = self.byte() as usize;
        if b < 128 {
            options[0]
        } else {
            options[b % options.len()]
        }
    }
    /// A 16-bit number.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    /// Up to `max` bytes taken from the input.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a.to_vec()
    }
}

// ---------------------------------------------------------------- tar

/// How a tar entry's name is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NameStyle {
    Plain,
    Pax,
    Gnu,
    Prefix,
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    let s = s.as_bytes();
    if s.len() > w {
        // GNU base-256 for numbers that do not fit.
        field.fill(0);
        field[0] = 0x80;
        let mut x = v;
        for b in field[1..].iter_mut().rev() {
            *b = x as u8;
            x >>= 8;
        }
    } else {
        field[..w].copy_from_slice(s);
        field[w] = 0;
    }
}

/// Writes a valid checksum into a 512-byte header block.
pub fn fix_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u64 = block[..512].iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

/// Rewrites the checksum of every 512-aligned block that looks like a
/// ustar/GNU header (after a mutation changed it).
pub fn fix_checksums(data: &mut [u8]) {
    for block in data.chunks_exact_mut(512) {
        if &block[257..262] == b"ustar" {
            fix_checksum(block);
        }
    }
}

fn header(name: &[u8], prefix: &[u8], size: u64, typeflag: u8, c: &mut Choices) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    let p = prefix.len().min(155);
    h[345..345 + p].copy_from_slice(&prefix[..p]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000 + c.byte() as u64);
    h[156] = typeflag;
    let gnu = c.chance(16);
    h[257..263].copy_from_slice(if gnu { b"ustar " } else { b"ustar\0" });
    h[263..265].copy_from_slice(if gnu { b" \0" } else { b"00" });
    fix_checksum(&mut h);
    if c.chance(3) {
        h[148] ^= 1; // a wrong checksum, on purpose
    }
    h
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
}

/// A tar archive being written.
struct Tar {
    out: Vec<u8>,
}

impl Tar {
    fn new() -> Self {
        Tar { out: Vec::new() }
    }

    fn entry(&mut self, name: &str, content: &[u8], typeflag: u8, c: &mut Choices) {
        let style = if name.len() > 100 {
            c.pick(&[NameStyle::Pax, NameStyle::Gnu, NameStyle::Prefix])
        } else {
            c.pick(&[
                NameStyle::Plain,
                NameStyle::Plain,
                NameStyle::Pax,
                NameStyle::Gnu,
            ])
        };
        let mut size = content.len() as u64;
        match style {
            NameStyle::Plain => {
                let h = header(name.as_bytes(), b"", size, typeflag, c);
                self.out.extend_from_slice(&h);
            }
            NameStyle::Prefix => {
                let cut = name.len().saturating_sub(100);
                let cut = name[cut..].find('/').map_or(cut, |i| cut + i);
                let (p, n) = name.split_at(cut);
                let n = n.strip_prefix('/').unwrap_or(n);
                let h = header(n.as_bytes(), p.as_bytes(), size, typeflag, c);
                self.out.extend_from_slice(&h);
            }
            NameStyle::Gnu => {
                let mut long = name.as_bytes().to_vec();
                long.push(0);
                let h = header(b"././@LongLink", b"", long.len() as u64, b'L', c);
                self.out.extend_from_slice(&h);
                self.out.extend_from_slice(&long);
                pad(&mut self.out);
                let short = &name.as_bytes()[..name.len().min(100)];
                let h = header(short, b"", size, typeflag, c);
                self.out.extend_from_slice(&h);
            }
            NameStyle::Pax => {
                let mut records = Vec::new();
                pax_record(&mut records, "path", name);
                if c.chance(32) {
                    // A PAX size that overrides the header's.
                    pax_record(&mut records, "size", &content.len().to_string());
                    size = c.u16() as u64;
                }
                if c.chance(16) {
                    pax_record(&mut records, "mtime", "1700000000.5");
                }
                if c.chance(8) {
                    let junk = c.bytes(40);
                    records.extend_from_slice(&junk);
                }
                let h = header(b"PaxHeaders/x", b"", records.len() as u64, b'x', c);
                self.out.extend_from_slice(&h);
                self.out.extend_from_slice(&records);
                pad(&mut self.out);
                let short = &name.as_bytes()[..name.len().min(100)];
                let h = header(short, b"", size, typeflag, c);
                self.out.extend_from_slice(&h);
            }
        }
        self.out.extend_from_slice(content);
        pad(&mut self.out);
    }

    fn file(&mut self, name: &str, content: &[u8], c: &mut Choices) {
        let flag = c.pick(&[b'0', b'0', 0, b'7', b'5', b'2', b'g']);
        self.entry(name, content, flag, c);
    }

    fn finish(mut self, c: &mut Choices) -> Vec<u8> {
        let zeros = c.pick(&[2usize, 2, 1, 0, 3, 20]);
        self.out.resize(self.out.len() + zeros * 512, 0);
        if c.chance(4) {
            let junk = c.bytes(600);
            self.out.extend_from_slice(&junk);
        }
        self.out
    }
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    out.extend_from_slice(format!("{len}{body}").as_bytes());
}

// ---------------------------------------------------------------- gzip

fn gzip(data: &[u8], c: &mut Choices) -> Vec<u8> {
    let mut flags = 0u8;
    if c.chance(16) {
        flags |= 0x08; // FNAME
    }
    if c.chance(16) {
        flags |= 0x04; // FEXTRA
    }
    if c.chance(8) {
        flags |= 0x10; // FCOMMENT
    }
    if c.chance(8) {
        flags |= 0x02; // FHCRC
    }
    if c.chance(2) {
        flags |= 0xe0; // reserved bits
    }
    let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 0xff];
    if c.chance(2) {
        out[2] = 7; // not deflate
    }
    if flags & 0x04 != 0 {
        let extra = c.bytes(20);
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(&extra);
    }
    if flags & 0x08 != 0 {
        out.extend_from_slice(b"data.tar\0");
    }
    if flags & 0x10 != 0 {
        out.extend_from_slice(b"comment\0");
    }
    if flags & 0x02 != 0 {
        let crc = crc32fast::hash(&out) as u16;
        out.extend_from_slice(&crc.to_le_bytes());
    }
    let level = c.pick(&[6u8, 0, 1, 9]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, level));
    let mut crc = crc32fast::hash(data);
    if c.chance(3) {
        crc ^= 1;
    }
    out.extend_from_slice(&crc.to_le_bytes());
    let mut len = data.len() as u32;
    if c.chance(3) {
        len = len.wrapping_add(1);
    }
    out.extend_from_slice(&len.to_le_bytes());
    if c.chance(4) {
        let more = c.pick(&[0u8, 0, 1, 0x1f]);
        out.extend(std::iter::repeat_n(more, 1 + c.below(30)));
    }
    out
}

// ---------------------------------------------------------------- json

const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "1e99",
    "-1",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\\\"",
    " ",
    "\"\"",
    "{}",
    "[]",
    "0.5",
];

/// Sometimes damages a JSON text with a few token edits.
fn perturb_json(text: String, c: &mut Choices) -> String {
    if !c.chance(24) {
        return text;
    }
    let mut t = text.into_bytes();
    for _ in 0..1 + c.below(3) {
        let at = if t.is_empty() {
            0
        } else {
            c.below(t.len() + 1)
        };
        match c.below(3) {
            0 => {
                let tok = TOKENS[c.below(TOKENS.len())];
                t.splice(at..at, tok.bytes());
            }
            1 if at < t.len() => {
                let end = (at + 1 + c.below(8)).min(t.len());
                t.drain(at..end);
            }
            _ if at < t.len() => t[at] = c.byte(),
            _ => {}
        }
    }
    String::from_utf8_lossy(&t).into_owned()
}

fn word(c: &mut Choices, usual: &str) -> String {
    match c.pick(&[0u8, 1, 2, 3]) {
        0 => usual.to_owned(),
        1 => String::from_utf8_lossy(&c.bytes(12))
            .replace(['"', '\\'], "")
            .chars()
            .filter(|ch| !ch.is_control())
            .collect(),
        2 => "é\\u00e9\\n".to_owned(),
        _ => "x".repeat(c.below(256) * 20),
    }
}

fn str_list(c: &mut Choices, usual: &str) -> String {
    let n = c.pick(&[1usize, 0, 2, 5, 40]);
    let items: Vec<String> = (0..n).map(|_| format!("\"{}\"", word(c, usual))).collect();
    if c.chance(8) {
        format!("\"{}\"", word(c, usual)) // a string where a list is due
    } else {
        format!("[{}]", items.join(","))
    }
}

fn header_info(payloads: &[String], c: &mut Choices) -> String {
    let ps: Vec<String> = payloads
        .iter()
        .map(|t| format!("{{\"type\":\"{t}\"}}"))
        .collect();
    let mut provides = format!("\"artifact_name\":\"{}\"", word(c, "release-1"));
    if c.chance(32) {
        provides += &format!(",\"artifact_group\":\"{}\"", word(c, "g"));
    }
    let mut depends = format!("\"device_type\":{}", str_list(c, "board"));
    if c.chance(32) {
        depends += &format!(",\"artifact_name\":{}", str_list(c, "release-0"));
    }
    if c.chance(16) {
        depends += &format!(",\"artifact_group\":{}", str_list(c, "g"));
    }
    let mut doc = format!(
        "{{\"payloads\":[{}],\"artifact_provides\":{{{provides}}},\"artifact_depends\":{{{depends}}}}}",
        ps.join(",")
    );
    if c.chance(8) {
        doc = format!("{{\"extra\":{{\"a\":[1,2,{{\"b\":null}}]}},{}", &doc[1..]);
    }
    perturb_json(doc, c)
}

fn type_info(kind: &str, c: &mut Choices) -> String {
    let mut doc = format!("{{\"type\":\"{kind}\"");
    if c.byte() < 200 {
        let n = c.pick(&[2usize, 0, 1, 10, 70]);
        let kv: Vec<String> = (0..n)
            .map(|i| format!("\"rootfs-image.k{i}\":\"{}\"", word(c, "v")))
            .collect();
        doc += &format!(",\"artifact_provides\":{{{}}}", kv.join(","));
    }
    if c.chance(48) {
        doc += &format!(
            ",\"artifact_depends\":{{\"rootfs-image.checksum\":{}}}",
            c.pick(&["\"abc\"", "[\"a\",\"b\"]", "1", "{}"])
        );
    }
    if c.chance(48) {
        doc += &format!(
            ",\"clears_artifact_provides\":{}",
            str_list(c, "rootfs-image.*")
        );
    }
    doc.push('}');
    perturb_json(doc, c)
}

fn meta_data(c: &mut Choices) -> String {
    let depth = c.below(40);
    let mut doc = String::new();
    for i in 0..depth {
        doc += &format!("{{\"k{i}\":[");
    }
    doc += "1";
    for _ in 0..depth {
        doc += "]}";
    }
    if depth == 0 {
        doc = "{\"a\":\"b\",\"n\":[1,2.5,true,null]}".to_owned();
    }
    perturb_json(doc, c)
}

// ---------------------------------------------------------------- artifact

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

/// An archive member: how it is compressed, its suffix.
fn compress(tar: Vec<u8>, c: &mut Choices) -> (Vec<u8>, &'static str) {
    match c.pick(&["", ".gz", ".gz", "", ".xz", ".zst", ".bz2"]) {
        ".gz" => (gzip(&tar, c), ".gz"),
        "" => (tar, ""),
        s => (tar, s), // a suffix the content does not match
    }
}

/// Builds an artifact from the fuzzer's choices.
pub fn artifact(data: &[u8]) -> Vec<u8> {
    let mut c = Choices::new(data);
    let c = &mut c;

    let version = match c.pick(&[0u8, 1, 2, 3, 4, 5]) {
        0 => "{\"format\":\"mender\",\"version\":3}".to_owned(),
        1 => "{\"format\":\"mender\",\"version\":2}".to_owned(),
        2 => "{ \"version\" : 3 , \"format\" : \"mender\" , \"x\" : [ {} ] }\n".to_owned(),
        3 => "{\"format\":\"mend\\u0065r\",\"version\":3}".to_owned(),
        4 => "{\"format\":\"mender\",\"version\":3.0}".to_owned(),
        _ => perturb_json("{\"format\":\"mender\",\"version\":3}".to_owned(), c),
    };

    // Payloads: a type and files each.
    let npay = c.pick(&[1usize, 1, 0, 2, 3, 5]);
    let kinds: Vec<String> = (0..npay)
        .map(|_| match c.pick(&[0u8, 1, 2]) {
            0 => "rootfs-image".to_owned(),
            1 => "".to_owned(),
            _ => word(c, "single-file"),
        })
        .collect();
    let mut payload_files: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    for _ in 0..npay {
        let nfiles = c.pick(&[1usize, 0, 2, 3]);
        let mut files = Vec::new();
        for i in 0..nfiles {
            let name = match c.pick(&[0u8, 1, 2, 3]) {
                0 if i == 0 => "rootfs.ext4".to_owned(),
                0 | 1 => format!("file{i}.bin"),
                2 => format!("{}.img", "n".repeat(95 + c.below(70))),
                _ => format!("dir/f{i}"),
            };
            let size = match c.pick(&[600usize, 0, 1, 511, 512, 513, 5000, 70_000]) {
                70_000 if c.chance(64) => 300_000,
                s => s,
            };
            let seed = c.byte();
            let content: Vec<u8> = (0..size)
                .map(|j| (j as u8).wrapping_mul(31) ^ seed ^ (j >> 9) as u8)
                .collect();
            files.push((name, content));
        }
        payload_files.push(files);
    }

    // header.tar
    let mut h = Tar::new();
    let mut header_kinds = kinds.clone();
    if c.chance(8) {
        header_kinds.push("rootfs-image".to_owned()); // header-info lists more payloads
    }
    let hi = header_info(&header_kinds, c);
    let scripts_first = c.chance(8);
    let nscripts = c.pick(&[0usize, 1, 2, 0]);
    let script = |h: &mut Tar, i: usize, c: &mut Choices| {
        let name = match c.pick(&[0u8, 1, 2]) {
            0 => format!("scripts/ArtifactInstall_Enter_{i:02}"),
            1 => "scripts/".to_owned(),
            _ => format!("scripts/a/b{i}"),
        };
        let body = format!("#!/bin/sh\necho {i}\n").repeat(1 + c.below(200));
        h.file(&name, body.as_bytes(), c);
    };
    if scripts_first {
        script(&mut h, 9, c);
    }
    if !c.chance(4) {
        h.file("header-info", hi.as_bytes(), c);
    }
    for i in 0..nscripts {
        script(&mut h, i, c);
    }
    if c.chance(16) {
        h.entry("headers", b"", b'5', c);
    }
    for (i, k) in kinds.iter().enumerate() {
        let idx = if c.chance(4) { i + 1 } else { i };
        if !c.chance(4) {
            let ti = type_info(k, c);
            h.file(&format!("headers/{idx:04}/type-info"), ti.as_bytes(), c);
        }
        if c.chance(64) {
            let md = meta_data(c);
            h.file(&format!("headers/{idx:04}/meta-data"), md.as_bytes(), c);
        }
        if c.chance(4) {
            h.file(&format!("headers/{idx:04}/unknown"), b"x", c);
        }
    }
    let header_tar = h.finish(c);
    let (header_member, hsuffix) = compress(header_tar, c);
    let header_name = format!("header.tar{hsuffix}");

    // data/NNNN.tar
    let mut data_members = Vec::new();
    for (i, files) in payload_files.iter().enumerate() {
        let mut d = Tar::new();
        for (name, content) in files {
            d.file(name, content, c);
        }
        let (m, suffix) = compress(d.finish(c), c);
        let idx = if c.chance(4) { i + 1 } else { i };
        data_members.push((format!("data/{idx:04}.tar{suffix}"), m));
    }

    // Augment (header-augment + manifest-augment), rarely.
    let augment = c.chance(12);
    let mut augment_member = None;
    if augment {
        let mut a = Tar::new();
        let ti = type_info("rootfs-image", c);
        a.file("headers/0000/type-info", ti.as_bytes(), c);
        let (m, suffix) = compress(a.finish(c), c);
        augment_member = Some((format!("header-augment.tar{suffix}"), m));
    }

    // manifest: one line per file, sorted like mender-artifact.
    let mut lines: Vec<(String, [u8; 32])> = vec![
        ("version".to_owned(), sha(version.as_bytes())),
        (header_name.clone(), sha(&header_member)),
    ];
    for (i, files) in payload_files.iter().enumerate() {
        for (name, content) in files {
            lines.push((format!("data/{i:04}/{name}"), sha(content)));
        }
    }
    lines.sort();
    match c.pick(&[0u8, 1, 2, 3, 4, 5, 6]) {
        1 if !lines.is_empty() => {
            let i = c.below(lines.len());
            lines.remove(i);
        }
        2 if !lines.is_empty() => {
            let i = c.below(lines.len());
            lines.push(lines[i].clone());
        }
        3 if !lines.is_empty() => {
            let i = c.below(lines.len());
            lines[i].1[c.below(32)] ^= 1;
        }
        4 => lines.push(("data/0000/missing".to_owned(), [7; 32])),
        5 => lines.reverse(),
        _ => {}
    }
    let sep = c.pick(&["  ", " ", " *", "\t"]);
    let eol = c.pick(&["\n", "\r\n", "\n\n"]);
    let mut manifest: String = lines
        .iter()
        .map(|(p, d)| format!("{}{sep}{p}{eol}", hex(d)))
        .collect();
    if c.chance(8) {
        manifest.pop();
    }
    if c.chance(4) {
        manifest = "z".repeat(64) + "  x\n" + &manifest;
    }
    let mut manifest_augment = String::new();
    if let Some((name, m)) = &augment_member {
        manifest_augment = format!("{}  {name}\n", hex(&sha(m)));
    }

    // The outer tar, in mender-artifact's order, sometimes perturbed.
    let mut members: Vec<(String, Vec<u8>)> = vec![
        ("version".to_owned(), version.into_bytes()),
        ("manifest".to_owned(), manifest.into_bytes()),
    ];
    if c.chance(48) {
        let sig_len = c.pick(&[64usize, 384, 256, 72, 0, 2000]);
        let raw: Vec<u8> = (0..sig_len).map(|i| i as u8 ^ 0x5a).collect();
        let mut b64 = base64(&raw);
        if c.chance(16) {
            b64.insert(c.below(b64.len() + 1), '!');
        }
        if c.chance(64) {
            b64.push('\n');
        }
        members.push(("manifest.sig".to_owned(), b64.into_bytes()));
    }
    if augment {
        members.push(("manifest-augment".to_owned(), manifest_augment.into_bytes()));
    }
    members.push((header_name, header_member));
    if let Some(m) = augment_member {
        members.push(m);
    }
    members.extend(data_members);
    match c.pick(&[0u8, 1, 2, 3, 4]) {
        1 if members.len() > 1 => {
            let i = c.below(members.len() - 1);
            members.swap(i, i + 1);
        }
        2 if !members.is_empty() => {
            let i = c.below(members.len());
            members.insert(i, members[i].clone());
        }
        3 => {
            let i = c.below(members.len() + 1);
            members.insert(i, ("unknown".to_owned(), b"??".to_vec()));
        }
        4 if !members.is_empty() => {
            let i = c.below(members.len());
            members.remove(i);
        }
        _ => {}
    }
    let mut outer = Tar::new();
    for (name, content) in &members {
        outer.file(name, content, c);
    }
    let mut art = outer.finish(c);

    // Last: a few raw byte edits, with the tar checksums made right again.
    if c.chance(32) && !art.is_empty() {
        for _ in 0..1 + c.below(4) {
            let at = (c.u16() as usize * 7) % art.len();
            art[at] = c.byte();
        }
        if c.byte() < 200 {
            fix_checksums(&mut art);
        }
    }
    if c.chance(8) {
        let cut = (c.u16() as usize * 3) % (art.len() + 1);
        art.truncate(cut);
    }
    art
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= ch.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
