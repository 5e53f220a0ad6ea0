"""Meta flow matching (Atanackovic et al., ICLR 2025) with FM and CGFM baselines."""

from sciflow.models.meta_flow_matching.config import Config
from sciflow.models.meta_flow_matching.conditioning import (NoConditioning, PopulationEncoder,
                                                           PopulationIdOneHot)
from sciflow.models.meta_flow_matching.coupling import exact_ot_pairing, sinkhorn_pairing, sinkhorn_plan
from sciflow.models.meta_flow_matching.field import ConditionalVectorField, sinusoidal_time_embedding
from sciflow.models.meta_flow_matching.model import MetaFlowMatching
from sciflow.models.meta_flow_matching.train import (TrainConfig, TrainResult, init_model, predict, random_rotation,
                                                     subsample, train)

__all__ = ["Config", "ConditionalVectorField", "MetaFlowMatching", "NoConditioning",
           "PopulationEncoder", "PopulationIdOneHot", "exact_ot_pairing", "sinkhorn_pairing",
           "sinkhorn_plan", "sinusoidal_time_embedding", "TrainConfig", "TrainResult", "init_model", "predict",
           "random_rotation", "subsample", "train"]
