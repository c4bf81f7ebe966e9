// `stepaudio quantize`: a checkpoint folder -> one GGUF v3 file that load_model() (and so `run`,
// `bench --model`, the server) opens directly when its path ends in ".gguf".
//
// The file holds every weight exactly as `--quant` would store it after loading the folder (the
// decoder's matrices Q8_0/Q4_0, the encoder/adapter bf16, vectors f32; ggml type ids), the
// config.json, tokenizer.json and added_tokens.json texts as string metadata
// (`stepaudio.config_json`, `tokenizer.huggingface.json`, `stepaudio.added_tokens_json`),
// `general.architecture` = "step-audio-2" and `stepaudio.quant`. Running from the .gguf gives
// bit-identical results to running the folder with the same --quant (tested).
// Thread-safety: a plain function; it loads its own copy of the model.
#pragma once

#include <string>

#include "stepaudio/model.h"

namespace stepaudio {

// Throws what load_model() throws for the folder, and Error(io) when `out` cannot be written (a
// failed write leaves no file under `out`).
void quantize_model(const std::string& dir, const std::string& out, Quant quant);
// The synthetic model `preset` (make_synthetic_model, seed 0) as a GGUF file, for load/speed
// measurements without a checkpoint; it holds no tokenizer (load_model works, load_engine does
// not).
void quantize_synthetic_model(const std::string& preset, const std::string& out, Quant quant);

// The weight type a file written by quantize_model holds (its `stepaudio.quant`), read from the
// header alone (the tensors are mapped, not read), so a caller can refuse a contradicting request
// before loading. Throws what load_model() throws for a malformed file.
Quant gguf_file_quant(const std::string& path);

}  // namespace stepaudio
