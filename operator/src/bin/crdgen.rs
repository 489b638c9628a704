//! Prints the AnalyticsPlatform CRD as YAML (`make crds` writes it to crds/).

fn main() {
    print!("{}", cairn_operator::crd_yaml());
}
