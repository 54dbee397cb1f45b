//! `saguaro info`: what is in a `.cact` file, and what this CPU runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use saguaro_engine::kernels::Kernels;
use saguaro_engine::{Error, LayerKind, Lfm2Config, Result};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A .cact model file.
    model: Option<PathBuf>,
    /// Print the detected CPU features and the kernel chosen for each table entry.
    #[arg(long)]
    cpu: bool,
    /// Omit the tensor table.
    #[arg(long)]
    brief: bool,
}

/// `writeln!` into a String (cannot fail).
macro_rules! outln {
    ($o:expr, $($arg:tt)*) => {{ use std::fmt::Write as _; let _ = writeln!($o, $($arg)*); }};
}

pub fn info(args: InfoArgs) -> Result<()> {
    let mut o = String::new();
    if args.cpu {
        print_cpu(&mut o)?;
    }
    match &args.model {
        Some(path) => print_model(&mut o, path, args.brief)?,
        None if args.cpu => {}
        None => return Err(Error::Input("give a .cact file, or --cpu".into())),
    }
    super::print::write_stdout(o.as_bytes())
}

fn print_model(o: &mut String, path: &std::path::Path, brief: bool) -> Result<()> {
    let file = saguaro_host::loader::open_cact(path)?;
    let c = Lfm2Config::from_json(&file.manifest.config).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        other => other,
    })?;
    let m = &file.manifest;
    outln!(o, "file        {} ({} bytes, format version {})", path.display(), file.len(), file.version);
    outln!(o, "model       {} ({}) vocab {} hidden {} layers {}", c.model_type, c.arch.name(), c.vocab_size, c.hidden_size, c.num_layers);
    let pattern: String = c
        .layer_kinds
        .iter()
        .zip(&c.layer_windows)
        .map(|(k, w)| match (k, w) {
            (LayerKind::Conv, _) => 'c',
            (LayerKind::Attention, None) => 'A',
            (LayerKind::Attention, Some(_)) => 's',
        })
        .collect();
    let window = c.layer_windows.iter().flatten().next().map(|w| format!(", s = sliding window {w}")).unwrap_or_default();
    outln!(o, "layers      {pattern}  (c = short conv, A = attention{window})");
    outln!(o, "attention   {} heads, {} kv heads, head_dim {}, rope_theta {}", c.num_heads, c.num_kv_heads, c.head_dim, c.rope_theta);
    outln!(o, "ffn         {}{}", c.ffn_dim, c.moe.as_ref().map(|m| format!(", {} experts top-{} width {}", m.num_experts, m.num_experts_per_tok, m.moe_intermediate_size)).unwrap_or_default());
    outln!(o, "context     {}   tied embeddings: {}", c.max_position_embeddings, c.tie_embeddings);
    let params: u64 = m.tensors.iter().map(|t| t.shape.iter().product::<u64>()).sum();
    outln!(o, "parameters  {params}");
    let mut by_dtype: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in &m.tensors {
        let e = by_dtype.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.data.length + t.scales.map_or(0, |s| s.length);
    }
    for (dtype, (n, bytes)) in &by_dtype {
        outln!(o, "dtype       {dtype:<5} {n:>4} tensors {bytes:>12} bytes");
    }
    let mut files: Vec<_> = m.files.iter().collect();
    files.sort_by_key(|(name, _)| name.as_str());
    for (name, span) in files {
        outln!(o, "file        {name} ({} bytes)", span.length);
    }
    outln!(o, "chat        {}", if m.chat_template.is_some() { "template included" } else { "no template" });
    outln!(o, "checksums   {}", match &m.checksums {
        Some(t) => format!("{} per tensor (`saguaro verify` checks them)", t.algorithm),
        None => "none (written before checksums existed)".to_string(),
    });
    if let Some(p) = &m.producer {
        outln!(o, "producer    {p}");
    }
    if !brief {
        outln!(o, "\n{:<52} {:<5} {:<14} {:<6} {:>12} {:>11}", "tensor", "dtype", "shape", "layout", "offset", "bytes");
        for t in &m.tensors {
            let shape = format!("{:?}", t.shape);
            let layout = format!("{:?}", t.layout).to_lowercase();
            let bytes = t.data.length + t.scales.map_or(0, |s| s.length);
            outln!(o, "{:<52} {:<5} {:<14} {:<6} {:>12} {:>11}", t.name, t.dtype.name(), shape, layout, t.data.offset, bytes);
        }
    }
    Ok(())
}

fn print_cpu(o: &mut String) -> Result<()> {
    outln!(o, "arch        {}", std::env::consts::ARCH);
    outln!(o, "features    {}", saguaro_host::kernels::cpu_features().join(" "));
    let tiers = saguaro_host::kernels::tiers();
    let names: Vec<String> = tiers.iter().map(|t| format!("{}{}", t.name, if (t.available)() { "" } else { " (unsupported)" })).collect();
    outln!(o, "tiers       {}", names.join(", "));
    let chosen = saguaro_host::kernels::select()?;
    match std::env::var("SAGUARO_KERNELS") {
        Ok(v) if !v.is_empty() => outln!(o, "selected    {} (forced by SAGUARO_KERNELS)", chosen.tier),
        _ => outln!(o, "selected    {}", chosen.tier),
    }
    // Which tier provides each entry: the first table (best first) holding the same function.
    let tables: Vec<(&str, Kernels)> = tiers.iter().rev().map(|t| (t.name, (t.kernels)())).collect();
    macro_rules! entry {
        ($field:ident) => {{
            let f = chosen.$field as usize;
            let from = tables.iter().rev().find(|(_, k)| k.$field as usize == f).map(|(n, _)| *n).unwrap_or("?");
            outln!(o, "  {:<14} {}", stringify!($field), from);
        }};
    }
    entry!(dot_f32);
    entry!(matmul_f32);
    entry!(matmul_f16);
    entry!(matmul_bf16);
    entry!(quantize_row);
    entry!(gemm_q8);
    entry!(gemm_q4);
    Ok(())
}
