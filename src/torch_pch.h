#pragma once
// Precompiled header for the translation units that need LibTorch.
// torch/torch.h costs ~15 s per TU; precompiled once, it is shared.
#include <torch/torch.h>
