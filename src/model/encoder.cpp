// Audio encoder + adapter, following upstream Step-Audio2 (AudioEncoder/Adaptor as in the vLLM port
// `step_audio2.py`, itself OpenAI Whisper's model.py with changes):
//   conv1 (k3 p1) + GELU, conv2 (k3 s2 p1) + GELU, + positional_embedding[:T'],
//   n_layer x { x += attn(attn_ln(x)) with key-padding bias; x += mlp(mlp_ln(x)) },
//   AvgPool1d(2, 2) over time, after_norm LayerNorm;
//   adapter: conv (k, stride, p1) + GELU, linear1 -> ReLU -> linear2.
// Lengths: x_len = T-2 mel frames; the bias masks conv2 row j when mel frame (T+1)%2 + 2j >= x_len
// (upstream: make_non_pad_mask(x_len, T)[:, :, (T+1)%2::2] -> (1-mask) * -1e10); the encoder keeps
// (x_len+1)//2//2 rows; the adapter runs on every pooled row (as upstream's batch forward does) and
// keeps (enc-1)//2+1.
#include "model/encoder.h"

#include <cmath>

#include "stepaudio/error.h"

namespace stepaudio::model {

namespace {
void linear(ops::ThreadPool& pool, const float* x, size_t n, const Linear& l, float* y) {
  ops::matmul(pool, x, n, l.w, l.b, y);
}
}  // namespace

AudioEmbedding encode_audio(const Model& m, ops::ThreadPool& pool, const float* mel, size_t n_mels,
                            size_t T, const std::function<void()>& between_blocks) {
  const auto& a = m.cfg.audio;
  if (n_mels != a.n_mels)
    throw Error(Errc::invalid_argument, "mel has " + std::to_string(n_mels) +
                                            " bins, the model expects " + std::to_string(a.n_mels));
  if (T < 5)
    throw Error(Errc::invalid_argument,
                "mel chunk of " + std::to_string(T) + " frames is too short (>= 5)");
  const size_t S = a.n_state, T2 = ops::conv1d_out_len(T, 3, 2, 1);
  if (T2 > a.n_ctx)
    throw Error(Errc::invalid_argument,
                "mel chunk of " + std::to_string(T) + " frames gives " + std::to_string(T2) +
                    " encoder positions, more than n_audio_ctx " + std::to_string(a.n_ctx) +
                    " (chunks are at most 25-30 s)");
  const size_t x_len = T - 2;

  // Convolutions on time-major data.
  std::vector<float> xt(T * n_mels);  // [T][n_mels]
  for (size_t c = 0; c < n_mels; ++c)
    for (size_t t = 0; t < T; ++t) xt[t * n_mels + c] = mel[c * T + t];
  std::vector<float> h1(T * S);  // [T][S]
  ops::conv1d(pool, xt.data(), T, n_mels, m.conv1.w, m.conv1.b, 3, 1, 1, h1.data());
  ops::gelu(pool, h1.data(), h1.size());
  std::vector<float> x(T2 * S);  // [T2][S] residual stream
  ops::conv1d(pool, h1.data(), T, S, m.conv2.w, m.conv2.b, 3, 2, 1, x.data());
  ops::gelu(pool, x.data(), x.size());
  ops::add(pool, x.data(), m.pos_emb, T2 * S);

  std::vector<float> key_bias(T2);  // [T2]: 0 for valid keys, -1e10 for padding
  for (size_t j = 0; j < T2; ++j) key_bias[j] = ((T + 1) % 2 + 2 * j) < x_len ? 0.0f : -1.0e10f;

  const size_t hd = S / a.n_head;
  // Whisper scales q and k by hd^-0.25 each; one 1/sqrt(hd) on the product is the same math.
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> h(T2 * S), q(T2 * S), k(T2 * S), v(T2 * S), o(T2 * S), f(T2 * 4 * S);
  // Each block's closing residual add is fused into the next norm (x += mlp(...) and h = LN(x) in
  // one pass), the last one into a plain add.
  const float eps = static_cast<float>(a.ln_eps);
  const float* pending = nullptr;  // the MLP output still to add to x
  for (const auto& b : m.blocks) {
    ops::add_layer_norm(pool, x.data(), pending, T2, S, b.attn_ln.w, b.attn_ln.b, eps, h.data());
    linear(pool, h.data(), T2, b.query, q.data());
    linear(pool, h.data(), T2, b.key, k.data());
    linear(pool, h.data(), T2, b.value, v.data());
    ops::attention(pool, {T2, T2, a.n_head, a.n_head, hd, S, S, b.query.w.fast}, q.data(), k.data(),
                   v.data(), scale, key_bias.data(), false, 0, o.data());
    linear(pool, o.data(), T2, b.out, h.data());
    ops::add_layer_norm(pool, x.data(), h.data(), T2, S, b.mlp_ln.w, b.mlp_ln.b, eps, h.data());
    linear(pool, h.data(), T2, b.fc1, f.data());
    ops::gelu(pool, f.data(), f.size());
    linear(pool, f.data(), T2, b.fc2, h.data());
    pending = h.data();
    if (between_blocks && &b != &m.blocks.back()) between_blocks();
  }
  if (pending) ops::add(pool, x.data(), pending, T2 * S);

  // AvgPool1d(2, 2): floor(T2 / 2) rows, then after_norm.
  const size_t P = T2 / 2;
  std::vector<float> pooled(P * S);  // [P][S]
  for (size_t i = 0; i < P; ++i)
    for (size_t c = 0; c < S; ++c)
      pooled[i * S + c] = (x[2 * i * S + c] + x[(2 * i + 1) * S + c]) * 0.5f;
  ops::layer_norm(pool, pooled.data(), P, S, m.after_norm.w, m.after_norm.b, eps, pooled.data());

  AudioEmbedding out;
  out.enc_rows = (x_len + 1) / 2 / 2;
  if (out.enc_rows == 0 || out.enc_rows > P)
    throw Error(Errc::internal, "encoder length " + std::to_string(out.enc_rows) + " vs " +
                                    std::to_string(P) + " rows");
  out.encoder.assign(pooled.begin(), pooled.begin() + out.enc_rows * S);

  const size_t A = ops::conv1d_out_len(P, a.kernel_size, a.adapter_stride, 1);
  std::vector<float> ac(A * S);  // [A][S]
  ops::conv1d(pool, pooled.data(), P, S, m.adapter_conv.w, m.adapter_conv.b, a.kernel_size,
              a.adapter_stride, 1, ac.data());
  ops::gelu(pool, ac.data(), ac.size());
  out.n_rows = (out.enc_rows - 1) / 2 + 1;
  if (out.n_rows > A)
    throw Error(Errc::internal,
                "adapter rows " + std::to_string(A) + " < " + std::to_string(out.n_rows));
  // Only the kept rows go through the two linears (row-wise ops: dropping rows first is exact).
  std::vector<float> l1(out.n_rows * a.adapter_hidden);  // [N][2048]
  ops::matmul(pool, ac.data(), out.n_rows, m.adapter_l1.w, m.adapter_l1.b, l1.data());
  ops::relu(l1.data(), l1.size());
  out.adapter.resize(out.n_rows * a.llm_dim);
  ops::matmul(pool, l1.data(), out.n_rows, m.adapter_l2.w, m.adapter_l2.b, out.adapter.data());
  return out;
}

}  // namespace stepaudio::model
