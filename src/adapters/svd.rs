//! The low-rank algebra behind adapter compression: a LoRA pair's product s·B·A (m × n, rank r)
//! factored without ever forming it — thin QR of B and of Aᵀ (Householder), then the SVD of the
//! small r × r core (one-sided Jacobi) — and truncated to rank k (Eckart–Young: the best rank-k
//! approximation in the Frobenius norm). Everything in f64.

/// A row-major dense matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Values, row by row.
    pub data: Vec<f64>,
}

impl Dense {
    /// Zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.cols + j] = v;
    }

    /// The transpose.
    pub fn t(&self) -> Self {
        let mut out = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out.set(j, i, self.at(i, j));
            }
        }
        out
    }

    /// self · other.
    pub fn mul(&self, other: &Self) -> Self {
        let mut out = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(i, k);
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[k * other.cols..(k + 1) * other.cols];
                let dst = &mut out.data[i * other.cols..(i + 1) * other.cols];
                for (d, b) in dst.iter_mut().zip(row) {
                    *d += a * b;
                }
            }
        }
        out
    }
}

/// Thin QR by Householder reflections: `a` (m × n, m ≥ n) = Q (m × n, orthonormal columns) ·
/// R (n × n, upper triangular). Zero columns are fine (R gets a zero diagonal there).
pub fn qr(a: &Dense) -> (Dense, Dense) {
    let (m, n) = (a.rows, a.cols);
    let mut r = a.clone();
    let mut reflectors: Vec<Option<Vec<f64>>> = Vec::with_capacity(n);
    for k in 0..n.min(m) {
        let norm = (k..m).map(|i| r.at(i, k).powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            reflectors.push(None);
            continue;
        }
        let alpha = if r.at(k, k) > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..m).map(|i| r.at(i, k)).collect();
        v[0] -= alpha;
        let vnorm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if vnorm == 0.0 {
            reflectors.push(None);
            continue;
        }
        v.iter_mut().for_each(|x| *x /= vnorm);
        for j in k..n {
            let dot: f64 = (k..m).map(|i| v[i - k] * r.at(i, j)).sum();
            for i in k..m {
                let val = r.at(i, j) - 2.0 * v[i - k] * dot;
                r.set(i, j, val);
            }
        }
        reflectors.push(Some(v));
    }
    let mut q = Dense::zeros(m, n);
    for i in 0..n.min(m) {
        q.set(i, i, 1.0);
    }
    for (k, v) in reflectors.iter().enumerate().rev() {
        let Some(v) = v else { continue };
        for j in 0..n {
            let dot: f64 = (k..m).map(|i| v[i - k] * q.at(i, j)).sum();
            for i in k..m {
                let val = q.at(i, j) - 2.0 * v[i - k] * dot;
                q.set(i, j, val);
            }
        }
    }
    let mut upper = Dense::zeros(n, n);
    for i in 0..n.min(m) {
        for j in i..n {
            upper.set(i, j, r.at(i, j));
        }
    }
    (q, upper)
}

/// SVD of a square matrix by one-sided Jacobi rotations: `m` = U · diag(σ) · Vᵀ with σ sorted
/// from largest to smallest.
pub fn svd(m: &Dense) -> (Dense, Vec<f64>, Dense) {
    let n = m.cols;
    let mut u = m.clone();
    let mut v = Dense::zeros(n, n);
    for i in 0..n {
        v.set(i, i, 1.0);
    }
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for i in 0..u.rows {
                    let (up, uq) = (u.at(i, p), u.at(i, q));
                    alpha += up * up;
                    beta += uq * uq;
                    gamma += up * uq;
                }
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for mat in [&mut u, &mut v] {
                    for i in 0..mat.rows {
                        let (xp, xq) = (mat.at(i, p), mat.at(i, q));
                        mat.set(i, p, c * xp - s * xq);
                        mat.set(i, q, s * xp + c * xq);
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sigma: Vec<f64> = (0..n)
        .map(|j| (0..u.rows).map(|i| u.at(i, j).powi(2)).sum::<f64>().sqrt())
        .collect();
    for (j, s) in sigma.iter().enumerate() {
        if *s > 0.0 {
            for i in 0..u.rows {
                let val = u.at(i, j) / s;
                u.set(i, j, val);
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sigma[b].total_cmp(&sigma[a]));
    let pick = |mat: &Dense| {
        let mut out = Dense::zeros(mat.rows, n);
        for (new, &old) in order.iter().enumerate() {
            for i in 0..mat.rows {
                out.set(i, new, mat.at(i, old));
            }
        }
        out
    };
    let (u, v) = (pick(&u), pick(&v));
    sigma = order.iter().map(|&j| sigma[j]).collect();
    (u, sigma, v)
}

/// A LoRA pair truncated: `b` (m × k) and `a` (k × n) with b·a the best rank-k approximation of
/// `scale`·B·A, and the singular values of `scale`·B·A (all of them, largest first).
#[derive(Debug, Clone)]
pub struct Truncated {
    /// New B (m × k), the square roots of the kept singular values folded in.
    pub b: Dense,
    /// New A (k × n), likewise.
    pub a: Dense,
    /// Every singular value of the original product.
    pub sigma: Vec<f64>,
}

/// Truncates `scale`·B·A (B: m × r, A: r × n) to rank `k` (at most r; with k = r the product is
/// kept exactly, up to rounding).
pub fn truncate(b: &Dense, a: &Dense, scale: f64, k: usize) -> Truncated {
    let r = b.cols;
    let k = k.min(r).max(1);
    let (qb, rb) = qr(b);
    let (qa, ra) = qr(&a.t());
    let mut core = rb.mul(&ra.t());
    core.data.iter_mut().for_each(|x| *x *= scale);
    let (u, sigma, v) = svd(&core);
    let mut uk = Dense::zeros(r, k);
    let mut vk = Dense::zeros(r, k);
    for i in 0..r {
        for (j, s) in sigma.iter().enumerate().take(k) {
            let root = s.sqrt();
            uk.set(i, j, u.at(i, j) * root);
            vk.set(i, j, v.at(i, j) * root);
        }
    }
    Truncated {
        b: qb.mul(&uk),
        a: qa.mul(&vk).t(),
        sigma,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix.
    fn random(rows: usize, cols: usize, seed: u64) -> Dense {
        let mut s = seed;
        let data = (0..rows * cols)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 33) as f64 / f64::from(u32::MAX)) * 2.0 - 1.0
            })
            .collect();
        Dense { rows, cols, data }
    }

    fn frob(a: &Dense, b: &Dense) -> f64 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn qr_and_svd_reconstruct_their_input() {
        let a = random(12, 5, 1);
        let (q, r) = qr(&a);
        assert!(frob(&q.mul(&r), &a) < 1e-12);
        let qtq = q.t().mul(&q);
        for i in 0..5 {
            for j in 0..5 {
                assert!((qtq.at(i, j) - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        let m = random(6, 6, 2);
        let (u, s, v) = svd(&m);
        let mut us = u.clone();
        for i in 0..6 {
            for (j, sj) in s.iter().enumerate() {
                us.set(i, j, u.at(i, j) * sj);
            }
        }
        assert!(frob(&us.mul(&v.t()), &m) < 1e-10);
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn truncation_keeps_the_known_singular_values_and_loses_exactly_the_rest() {
        // B·A = Q1 · diag(5, 3, 1, 0.5) · Q2ᵀ with orthonormal Q1 (20 × 4), Q2 (30 × 4).
        let (q1, _) = qr(&random(20, 4, 3));
        let (q2, _) = qr(&random(30, 4, 4));
        let known = [5.0, 3.0, 1.0, 0.5];
        let mut b = q1.clone();
        for i in 0..20 {
            for (j, s) in known.iter().enumerate() {
                b.set(i, j, q1.at(i, j) * s);
            }
        }
        let a = q2.t();
        let full = b.mul(&a);
        for (k, tail) in [(4, 0.0_f64), (2, 1.25_f64.sqrt()), (1, 10.25_f64.sqrt())] {
            let t = truncate(&b, &a, 1.0, k);
            for (s, want) in t.sigma.iter().zip(known) {
                assert!((s - want).abs() < 1e-9, "{:?}", t.sigma);
            }
            assert_eq!((t.b.cols, t.a.rows), (k, k));
            let err = frob(&t.b.mul(&t.a), &full);
            assert!((err - tail).abs() < 1e-9, "rank {k}: error {err}, want {tail}");
        }
        // The scale is folded in.
        let t = truncate(&b, &a, 2.0, 4);
        let mut twice = full.clone();
        twice.data.iter_mut().for_each(|x| *x *= 2.0);
        assert!(frob(&t.b.mul(&t.a), &twice) < 1e-9);
    }

    #[test]
    fn a_zero_b_truncates_to_zero() {
        let b = Dense::zeros(8, 3);
        let a = random(3, 10, 5);
        let t = truncate(&b, &a, 1.0, 2);
        assert!(t.b.mul(&t.a).data.iter().all(|x| x.abs() < 1e-15));
        assert!(t.sigma.iter().all(|s| *s == 0.0));
    }
}
