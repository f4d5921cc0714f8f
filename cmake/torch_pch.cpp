// Anchor translation unit for the shared torch precompiled header.
namespace kto { int torch_pch_anchor = 0; }
