//! Writes the VM's initramfs: a gzip-compressed newc cpio archive.
//!
//! Why our own cpio writer instead of `find | cpio -o`: the archive needs a /dev/console
//! character device (so /init's output reaches ttyS0 before devtmpfs is mounted), which a
//! staging directory could only hold through mknod; writing the format directly needs no
//! staging copy of the (large, static) binaries, and with fixed inode numbers and mtimes the
//! archive is reproducible. Compression is left to `gzip`, which every Debian system has.

use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// One archive member; paths are relative to the image root (`bin/busybox`, not `/bin/busybox`).
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        source: PathBuf,
        mode: u32,
    },
    Bytes {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    CharDev {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Writes `entries` as `dest` (cpio newc, gzip -1).
pub fn write_gz(dest: &Path, entries: &[Entry]) -> Result<()> {
    let out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut gzip = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .context("starting gzip")?;
    let stdin = gzip
        .stdin
        .take()
        .ok_or_else(|| anyhow!("gzip has no stdin"))?;
    let mut writer = BufWriter::new(stdin);
    let written = write_cpio(&mut writer, entries).and_then(|()| {
        writer.flush().context("writing to gzip")?;
        Ok(())
    });
    drop(writer);
    let status = gzip.wait().context("waiting for gzip")?;
    written?;
    if !status.success() {
        bail!("gzip failed ({status}) writing {}", dest.display());
    }
    Ok(())
}

/// Writes the uncompressed newc archive, trailer included.
pub fn write_cpio(w: &mut impl Write, entries: &[Entry]) -> Result<()> {
    for (index, entry) in entries.iter().enumerate() {
        let ino = u32::try_from(index + 1).context("too many entries")?;
        match entry {
            Entry::Dir { path, mode } => header(w, ino, S_IFDIR | mode, 2, 0, (0, 0), path)?,
            Entry::CharDev {
                path,
                mode,
                major,
                minor,
            } => header(w, ino, S_IFCHR | mode, 1, 0, (*major, *minor), path)?,
            Entry::Bytes { path, data, mode } => {
                let size = u32::try_from(data.len()).context("member too large")?;
                header(w, ino, S_IFREG | mode, 1, size, (0, 0), path)?;
                w.write_all(data)?;
                pad(w, data.len())?;
            }
            Entry::File { path, source, mode } => {
                let mut file =
                    File::open(source).with_context(|| format!("opening {}", source.display()))?;
                let len = file
                    .metadata()
                    .with_context(|| format!("stat {}", source.display()))?
                    .len();
                let size = u32::try_from(len).context("cpio newc members must be < 4 GiB")?;
                header(w, ino, S_IFREG | mode, 1, size, (0, 0), path)?;
                let copied = io::copy(&mut file, w)
                    .with_context(|| format!("copying {} into the archive", source.display()))?;
                if copied != len {
                    bail!("{} changed size while archiving", source.display());
                }
                pad(w, copied as usize)?;
            }
        }
    }
    header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")
}

fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    (rdev_major, rdev_minor): (u32, u32),
    name: &str,
) -> Result<()> {
    let name_size = u32::try_from(name.len() + 1).context("name too long")?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0,
    ];
    let mut head = String::from("070701");
    for field in fields {
        head.push_str(&format!("{field:08x}"));
    }
    w.write_all(head.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, head.len() + name.len() + 1)?;
    Ok(())
}

/// Pads to the 4-byte alignment newc requires after headers+names and after data.
fn pad(w: &mut impl Write, len: usize) -> Result<()> {
    let zeros = [0u8; 3];
    w.write_all(&zeros[..(4 - len % 4) % 4])?;
    Ok(())
}

/// Fails unless `path` is an x86-64 ELF without a PT_INTERP program header, i.e. one that runs
/// in an initramfs with no dynamic loader or libc.
pub fn check_static(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ehdr = [0u8; 64];
    file.read_exact_at(&mut ehdr, 0)
        .with_context(|| format!("reading the ELF header of {}", path.display()))?;
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let u16_at = |at: usize| u16::from_le_bytes([ehdr[at], ehdr[at + 1]]);
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&ehdr[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff);
    let (phentsize, phnum) = (u64::from(u16_at(0x36)), u64::from(u16_at(0x38)));
    for index in 0..phnum {
        let mut p_type = [0u8; 4];
        file.read_exact_at(&mut p_type, phoff + index * phentsize)
            .with_context(|| format!("reading program headers of {}", path.display()))?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(p_type) == PT_INTERP {
            bail!(
                "{} is dynamically linked; the VM has no libc (build with +crt-static)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Removes `dir` if present and creates it empty.
pub fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::{write_cpio, Entry};

    #[test]
    fn newc_layout() -> anyhow::Result<()> {
        let mut out = Vec::new();
        let entries = [
            Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            },
            Entry::Bytes {
                path: "init".into(),
                data: b"#!/bin/sh\n".to_vec(),
                mode: 0o755,
            },
        ];
        write_cpio(&mut out, &entries)?;
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"07070100000001000041ed"));
        // second header: 110 + "bin\0" (4) = 114 -> padded to 116
        assert_eq!(&out[116..116 + 22], b"07070100000002000081ed");
        // file size field (7th) of the second header is 10 bytes
        assert_eq!(&out[116 + 54..116 + 62], b"0000000a");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("#!/bin/sh\n"));
        Ok(())
    }
}
