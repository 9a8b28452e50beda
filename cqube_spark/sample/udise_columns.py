"""Column lists of the UDISE+ emission tables (file order), as data.

Source of the names and types: the upstream cQube staging DDL for UDISE
(Sunbird-cQube/cQube_Workflow development/datasource/udise/postgres/udise.sql) and the
``select_columns_*`` queries of development/datasource/udise/nifi/udise_parameters.txt.
The emitted CSV carries the same columns as the staging table.

Each table is a whitespace-separated list of ``name:type`` tokens, type codes:
``i`` smallint/int, ``l`` bigint, ``d`` double, ``D`` date (yyyy-MM-dd), ``t`` free text,
``sN`` varchar(N). ``configs/sources/udise_*.yaml`` were written from these lists; the unit
tests check that generated files and specs agree.
"""

from __future__ import annotations


def _range_cols(prefix: str, lo: int, hi: int, suffixes=("b", "g"), typ: str = "i") -> str:
    return " ".join(f"{prefix}{n}_{s}:{typ}" for n in range(lo, hi + 1) for s in suffixes)


UDISE_SCH_PROFILE = " ".join([
    "udise_sch_code:l ac_year:t address:s100",
    " ".join(f"c{n}_sec:i" for n in range(0, 13)),
    "estd_year:s10 recog_year_pri:s10 recog_year_upr:s10 recog_year_sec:s10 recog_year_hsec:s10",
    "upgrd_year_ele:s10 upgrd_year_sec:s10 upgrd_year_hsec:s10",
    "cwsn_sch_yn:i shift_sch_yn:i resi_sch_yn:i resi_sch_type:i",
    "boarding_pri_yn:i boarding_pri_b:i boarding_pri_g:i boarding_upr_yn:i boarding_upr_b:i boarding_upr_g:i",
    "boarding_sec_yn:i boarding_sec_b:i boarding_sec_g:i boarding_hsec_yn:i boarding_hsec_b:i boarding_hsec_g:i",
    "minority_yn:i minority_type:i mtongue_pri:i medinstr1:i medinstr2:i medinstr3:i medinstr4:i medinstr_oth:s100",
    "lang1:i lang2:i lang3:i prevoc_yn:i eduvoc_yn:i",
    "board_sec:i board_sec_no:s100 board_sec_oth:s100 board_hsec:i board_hsec_no:s100 board_hsec_oth:s100",
    "distance_pri:d distance_upr:d distance_sec:d distance_hsec:d approach_road_yn:i ppsec_yn:i",
    "ppstu_lkg_b:i ppstu_lkg_g:i ppstu_ukg_b:i ppstu_ukg_g:i",
    "anganwadi_yn:i anganwadi_code:s100 anganwadi_stu_b:i anganwadi_stu_g:i anganwadi_tch_trained:i",
    "workdays_pre_pri:i workdays_pri:i workdays_upr:i workdays_sec:i workdays_hsec:i",
    " ".join(f"sch_hrs_stu_{g}:d" for g in ("pre_pri", "pri", "upr", "sec", "hsec")),
    " ".join(f"sch_hrs_tch_{g}:d" for g in ("pre_pri", "pri", "upr", "sec", "hsec")),
    "cce_yn_pri:i cce_yn_upr:i cce_yn_sec:i cce_yn_hsec:i pcr_maintained_yn:i pcr_shared_yn:i",
    "rte_25p_applied:i rte_25p_enrolled:i",
    _range_cols("rte_pvt_c", 0, 8), _range_cols("rte_bld_c", 0, 8), _range_cols("rte_ews_c", 9, 12),
    "spltrg_yn:i spltrg_cy_prov_b:i spltrg_cy_prov_g:i spltrg_py_enrol_b:i spltrg_py_enrol_g:i",
    "spltrg_py_prov_b:i spltrg_py_prov_g:i spltrg_by:i spltrg_place:i spltrg_type:i remedial_tch_enrol:i",
    "session_start_mon:i txtbk_recd_yn:i txtbk_recd_mon:i supp_mat_recd_yn:i",
    " ".join(f"{k}_{g}_yn:i" for k in ("txtbk", "tle", "playmat") for g in ("pre_pri", "pri", "upr", "sec", "hsec")),
    "no_inspect:i no_visit_crc:i no_visit_brc:i no_visit_dis:i",
    "smc_yn:i smc_mem_m:i smc_mem_f:i smc_par_m:i smc_par_f:i smc_par_sc:i smc_par_st:i smc_par_ews:i",
    "smc_par_min:i smc_lgb_m:i smc_lgb_f:i smc_tch_m:i smc_tch_f:i smc_trained_m:i smc_trained_f:i",
    "smc_meetings:i smc_sdp_yn:i smc_bnkac_yn:i",
    "smdc_smc_same_yn:i smdc_yn:i smdc_mem_m:i smdc_mem_f:i smdc_par_m:i smdc_par_f:i",
    "smdc_par_ews_m:i smdc_par_ews_f:i smdc_lgb_m:i smdc_lgb_f:i smdc_ebmc_m:i smdc_ebmc_f:i smdc_women_f:i",
    "smdc_scst_m:i smdc_scst_f:i smdc_deo_m:i smdc_deo_f:i smdc_audit_m:i smdc_audit_f:i",
    "smdc_subexp_m:i smdc_subexp_f:i smdc_tch_m:i smdc_tch_f:i smdc_vp_m:i smdc_vp_f:i",
    "smdc_prin_m:i smdc_prin_f:i smdc_cp_m:i smdc_cp_f:i smdc_trained_m:i smdc_trained_f:i",
    "smdc_meetings:i smdc_sdp_yn:i smdc_bnkac_yn:i smdc_sbc_yn:i smdc_acadcom_yn:i smdc_pta_yn:i smdc_pta_meeting:i",
])

UDISE_SCH_FACILITY = " ".join([
    "udise_sch_code:l ac_year:t bld_status:i bld_blk_tot:i bld_blk:i bld_blk_ppu:i bld_blk_kuc:i bld_blk_tnt:i",
    "bld_blk_dptd:i bld_blk_undcons:i bndrywall_type:i clsrms_inst:i clsrms_und_cons:i clsrms_dptd:i",
    "clsrms_pre_pri:i clsrms_pri:i clsrms_upr:i clsrms_sec:i clsrms_hsec:i othrooms:i",
    "clsrms_gd:i clsrms_gd_ppu:i clsrms_gd_kuc:i clsrms_gd_tnt:i clsrms_min:i clsrms_min_ppu:i clsrms_min_kun:i",
    "clsrms_min_tnt:i clsrms_maj:i clsrms_maj_ppu:i clsrms_maj_kuc:i clsrms_maj_tnt:i land_avl_yn:i hm_room_yn:i",
    "toilet_yn:i toiletb:i toiletb_fun:i toiletg:i toiletg_fun:i toiletb_cwsn:i toiletb_cwsn_fun:i",
    "toiletg_cwsn:i toiletg_cwsn_fun:i urinalsb:i urinalsb_fun:i urinalsg:i urinalsg_fun:i",
    "toiletb_fun_water:i toiletg_fun_water:i handwash_yn:i incinerator_yn:i drink_water_yn:i",
    "hand_pump_tot:i hand_pump_fun:i well_prot_tot:i well_prot_fun:i well_unprot_tot:i well_unprot_fun:i",
    "tap_tot:i tap_fun:i pack_water:i pack_water_fun:i othsrc_tot:i othsrc_fun:i othsrc_name:s100",
    "water_purifier_yn:i water_tested_yn:i rain_harvest_yn:i handwash_meal_yn:i handwash_meal_tot:i",
    "electricity_yn:i solarpanel_yn:i library_yn:i lib_books:i lib_books_ncert:i bookbank_yn:i",
    "bkbnk_books:i bkbnk_books_ncert:i readcorner_yn:i readcorner_books:i librarian_yn:i newspaper_yn:i",
    "playground_yn:i playground_alt_yn:i medchk_yn:i medchk_tot:i dewormtab_yn:i irontab_yn:i",
    "ramps_yn:i handrails_yn:i spl_educator_yn:i kitchen_garden_yn:i dstbn_clsrms_yn:i dstbn_toilet_yn:i",
    "dstbn_kitchen_yn:i stus_hv_furnt:i ahmvp_room_yn:i comroom_g_yn:i staff_room_yn:i craft_room_yn:i",
    "staff_qtr_yn:i integrated_lab_yn:i library_room_yn:i comp_room_yn:i tinkering_lab_yn:i",
    "phy_lab_yn:i phy_lab_cond:i chem_lab_yn:i chem_lab_cond:i boi_lab_yn:i bio_lab_cond:i",
    "math_lab_yn:i math_lab_cond:i lang_lab_yn:i lang_lab_cond:i geo_lab_yn:i geo_lab_cond:i",
    "homesc_lab_yn:i home_sc_lab_cond:i psycho_lab_yn:i psycho_lab_cond:i audio_system_yn:i",
    "sciencekit_yn:i mathkit_yn:i biometric_dev_yn:i comp_lab_type:i ict_impl_year:i ictlab_fun_yn:i",
    "ict_model_impl:i ict_instr_type:i",
    " ".join(f"{k}_yn:i {k}_tot:i {k}_fun:i" for k in (
        "laptop", "tablets", "desktop", "teachdev", "digi_board", "server", "projector", "led",
        "printer", "scanner", "webcam", "generator")),
    "internet_yn:i dth_yn:i digi_res_yn:i tech_soln_yn:i ict_tools_yn:i ict_teach_hrs:i",
])

UDISE_SCH_ENR_FRESH = " ".join([
    "udise_sch_code:l ac_year:t item_group:i item_id:i cpp_b:i cpp_g:i",
    _range_cols("c", 1, 12),
])

UDISE_TCH_PROFILE = " ".join([
    "udise_sch_code:l tch_code:s100 name:s100 gender:i dob:D social_cat:i tch_type:i nature_of_appt:i",
    "doj_service:D qual_acad:i qual_prof:i class_taught:i appt_sub:i sub_taught1:i sub_taught2:i",
    "trn_brc:i trn_crc:i trn_diet:i trn_other:i trng_rcvd:i trng_needed:i nontch_days:i",
    "math_upto:i science_upto:i english_upto:i lang_study_upto:i soc_study_upto:i yoj_pres_sch:s100",
    "disability_type:i trained_cwsn:i trained_comp:i",
])

UDISE_TABLES = {
    "udise_sch_profile": UDISE_SCH_PROFILE,
    "udise_sch_facility": UDISE_SCH_FACILITY,
    "udise_sch_enr_fresh": UDISE_SCH_ENR_FRESH,
    "udise_tch_profile": UDISE_TCH_PROFILE,
}

# Business keys (the upstream primary keys).
UDISE_KEYS = {
    "udise_sch_profile": ["udise_sch_code"],
    "udise_sch_facility": ["udise_sch_code"],
    "udise_sch_enr_fresh": ["udise_sch_code", "item_group", "item_id"],
    "udise_tch_profile": ["udise_sch_code", "tch_code"],
}


def udise_columns(table: str) -> list[tuple[str, str]]:
    """``[(column, type_code), ...]`` in file order for one UDISE table."""
    out = []
    for tok in UDISE_TABLES[table].split():
        name, _, typ = tok.partition(":")
        out.append((name, typ))
    return out
