#pragma once
/// Pipeline stages: the hidden-state hand-off between stages, and the work before the first layer (embedding) and
/// after the last (final norm, logits). Which layers a stage owns is SGLang's split, pp_layer_ranges()
/// (models/memory_model.hpp).

#include <vector>

#include "models/builders/layer_context.hpp"

namespace paratwin::build {

/// Embedding lookup of the rank's tokens (first stage).
OpRef embed_tokens(LayerContext& ctx, RankEmitter& e);
/// Receives the micro-batch's hidden states from the same position in the previous stage.
OpRef receive_from_previous_stage(LayerContext& ctx, RankEmitter& e);
/// Sends the micro-batch's hidden states to the same position in the next stage.
OpRef send_to_next_stage(LayerContext& ctx, RankEmitter& e, OpRef hidden);
/// Last stage: gather the CP shards (prefill), final norm and logits of each request's last token (prefill) or of
/// every new token (decode).
OpRef final_logits(LayerContext& ctx, RankEmitter& e, OpRef hidden);

}  // namespace paratwin::build
